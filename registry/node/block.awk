# registry node trust: a file we share with its owner (k3s' registries.yaml),
# with our marked block (mode=create) or without it (mode=delete), read from
# the file named, printed on stdout. Everything outside the block is printed
# byte for byte, final newline or not.
#
# Variables (awk -v): mode, begin_mark, end_mark, entry (create: a file
# holding the block's inner lines), file_noeol (1 when the file has no final
# newline). Exit status 3: a BEGIN line without its END, or two BEGIN lines.
#
# create replaces the block where it is, or appends it. Appended to a file
# without a final newline, it adds one and says so on its BEGIN line
# (" noeol"), so that delete takes exactly that newline away again.
BEGIN {
  count = 0; inblock = 0; found = 0; noeol = 0; at = 0
  if (mode == "create") while ((getline line < entry) > 0) inner[++inner_count] = line
}
$0 == begin_mark || $0 == begin_mark " noeol" {
  if (found) exit 3
  inblock = 1; found = 1; at = count
  if ($0 == begin_mark " noeol") noeol = 1
  next
}
$0 == end_mark && inblock { inblock = 0; next }
inblock { next }
{ out[++count] = $0 }
function add_block(    k) {
  lines[++n] = begin_mark (noeol ? " noeol" : "")
  for (k = 1; k <= inner_count; k++) lines[++n] = inner[k]
  lines[++n] = end_mark
}
END {
  if (inblock) exit 3
  if (mode == "create" && !found) { at = count; noeol = (count > 0 && file_noeol) }
  n = 0
  for (i = 1; i <= count; i++) {
    if (mode == "create" && i == at + 1) add_block()
    lines[++n] = out[i]
  }
  if (mode == "create" && at == count) add_block()
  # A block at the end ends the file with a newline (create), or gives the
  # file back its own last byte (delete); elsewhere, the file's last line decides.
  if (found && at == count) last_bare = (mode == "delete" && noeol)
  else if (mode == "create" && at == count) last_bare = 0
  else last_bare = file_noeol
  for (i = 1; i <= n; i++) {
    if (i == n && last_bare) printf "%s", lines[i]
    else printf "%s\n", lines[i]
  }
}
