# registry node trust: /etc/hosts with our block (mode=create) or without it
# (mode=delete), read on stdin or from the file named, printed on stdout.
#
# Variables (awk -v): mode, name, ip, eol ("\r" for a CRLF file, else ""),
# file_noeol (1 when the file has no final newline), begin_mark, end_mark,
# disabled_prefix, kept_suffix. Exit status 3: a BEGIN line without its END.
#
# Lines are compared without a trailing CR; lines it does not touch are
# printed byte for byte. Unmanaged lines that map our name are commented out
# with disabled_prefix (and their other names kept on a line ending in
# kept_suffix); delete brings them back.
function bare(s) { sub(/\r$/, "", s); return s }
# Names are whole fields after the address: my-image-registry is not image-registry.
function maps_name(s,    n, f, k) {
  sub(/#.*/, "", s)
  n = split(s, f, " ")
  for (k = 2; k <= n; k++) if (tolower(f[k]) == name) return 1
  return 0
}
# The same line without our name, or "" when no other name is left.
function others(s,    n, f, k, rest) {
  sub(/#.*/, "", s)
  n = split(s, f, " ")
  rest = ""
  for (k = 2; k <= n; k++) if (tolower(f[k]) != name) rest = rest " " f[k]
  return rest == "" ? "" : f[1] rest
}
function emit(s) { out[++count] = s }
# noeol records what create added to a file that had no final newline:
# 1 = "\n", 2 = "\r\n" (a CRLF file), so that delete takes exactly that away.
function our_block() {
  emit(begin_mark (noeol == 1 ? " noeol" : noeol == 2 ? " noeol-crlf" : "") eol)
  emit(ip " " name eol)
  emit(end_mark eol)
}
BEGIN { count = 0; inblock = 0; placed = 0; noeol = 0; lastblockend = 0 }
{
  line = $0; b = bare(line)
  if (b == begin_mark || b == begin_mark " noeol" || b == begin_mark " noeol-crlf") {
    if (inblock) exit 3
    inblock = 1
    if (b == begin_mark " noeol") noeol = 1
    if (b == begin_mark " noeol-crlf") noeol = 2
    next
  }
  if (b == end_mark) {
    if (!inblock) next
    inblock = 0
    if (mode == "create" && !placed) { our_block(); placed = 1 }
    lastblockend = count
    next
  }
  if (inblock) next
  if (index(b, disabled_prefix) == 1) {
    if (mode == "delete") emit(substr(b, length(disabled_prefix) + 1) (line ~ /\r$/ ? "\r" : ""))
    else emit(line)
    next
  }
  if (length(b) > length(kept_suffix) && substr(b, length(b) - length(kept_suffix) + 1) == kept_suffix) {
    if (mode == "create") emit(line)
    next
  }
  if (mode == "create" && b !~ /^[ \t]*#/ && maps_name(b)) {
    cr = (line ~ /\r$/) ? "\r" : ""
    emit(disabled_prefix b cr)
    rest = others(b)
    if (rest != "") emit(rest kept_suffix cr)
    next
  }
  emit(line)
}
END {
  if (inblock) exit 3
  if (mode == "create" && !placed) {
    noeol = file_noeol
    if (noeol && eol == "\r" && out[count] !~ /\r$/) { out[count] = out[count] "\r"; noeol = 2 }
    our_block()
    lastblockend = count
  }
  # A missing final newline stays missing unless our block ends the file;
  # when delete takes away a block that ended it, the newline create had to
  # add goes too.
  final_newline = 1
  if (mode == "delete" && noeol && lastblockend == count && count > 0) {
    final_newline = 0
    if (noeol == 2) sub(/\r$/, "", out[count])
  } else if (file_noeol && lastblockend != count) {
    final_newline = 0
  }
  for (i = 1; i <= count; i++) {
    if (i == count && !final_newline) printf "%s", out[i]
    else printf "%s\n", out[i]
  }
}
