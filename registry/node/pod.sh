# registry node trust, the DaemonSet's side (nodeTrust: cluster). It runs in
# the pod's container, never on the node itself: it hands a node program (the
# same bytes and parameters as over SSH) to the host's root, mounted at /host,
# through chroot, and decides when the node is to be given back.
#
#   pod.sh run     the container: run the program's create until it succeeds,
#                  then mark the pod ready and wait; told to stop, give the
#                  node back if, and only if, the DaemonSet is being deleted
#   pod.sh ready   the readiness probe: create has succeeded in this container
#
# Two DaemonSets run it: node trust on every node, and with storage node the
# data folder's on that node (registry/cluster_trust.py). Its files come from
# the ConfigMap mounted at $FILES: program, create, delete (the program's
# parameters) and run (what runs the program from stdin). The environment
# names the node (NODE_NAME), the pod (POD_NAME), the DaemonSet (DAEMONSET,
# POD_NAMESPACE) and when to give the node back (GIVE_BACK):
#   torn-down  node trust: when the DaemonSet is deleted or gone, and also when
#              its namespace is, or the pod's access to the API is revoked (a
#              namespace deleted by hand takes the account first): a node must
#              never keep trust that nothing will take away.
#   deleted    the data folder: only when the DaemonSet itself is deleted or
#              gone and its namespace stays, since giving it back may remove
#              the images; otherwise the folder stays as it is.
set -u

FILES=${FILES:-/etc/registry-node-trust}
HOST=${HOST_ROOT:-/host}
ACCOUNT=${ACCOUNT:-/var/run/secrets/kubernetes.io/serviceaccount}
READY=${READY:-${TMPDIR:-/tmp}/ready}
GIVE_BACK=${GIVE_BACK:-torn-down}
CHILD=""
SLEEPER=""

say() { printf 'registry-node-trust[%s]: %s\n' "${NODE_NAME:-?}" "$*" >&2; }

# node_run ACTION: the node program with ACTION's parameters, as root in the
# host's root; the program on stdin, as over SSH. Run in a subshell: the
# subshell becomes the program, which a stop can then signal.
node_run() {
  exec chroot "$HOST" /bin/sh -c "$(cat "$FILES/$1")
$(cat "$FILES/run")" <"$FILES/program"
}

# The API server's address as a URL's host: an IPv6 address in brackets.
api_host() {
  case $KUBERNETES_SERVICE_HOST in
    *:*) printf '[%s]' "$KUBERNETES_SERVICE_HOST" ;;
    *) printf '%s' "$KUBERNETES_SERVICE_HOST" ;;
  esac
}

# api METHOD PATH OUT [BODY]: one request to the API server as the pod's
# service account; the answer's body goes to OUT, its HTTP status to stdout. The
# token goes to curl on stdin, never on a command line.
api() {
  local token method="$1" path="$2" out="$3" body="${4:-}"
  token=$(cat "$ACCOUNT/token") || return 1
  if [ -n "$body" ]; then set -- -H "Content-Type: application/json" --data-binary "$body"; else set --; fi
  # A user agent of its own: the API server indents its JSON for curl's, which the parsing here does not expect.
  printf 'header = "Authorization: Bearer %s"\n' "$token" | curl -sS -K - --max-time 10 -A registry-node-trust \
    --cacert "$ACCOUNT/ca.crt" -X "$method" -o "$out" -w '%{http_code}' -H "Accept: application/json" "$@" \
    "https://$(api_host):$KUBERNETES_SERVICE_PORT$path"
}

# object_state PATH: whether the object at PATH is going: 0 it is being
# deleted or is gone, 1 it stays, 2 cannot tell, 3 the pod may no longer ask
# (its account, its token or its rights are gone or going). The first uid
# of the answer is left in OBJECT_UID.
object_state() {
  local body code
  OBJECT_UID=""
  body=$(mktemp) || return 2
  code=$(api GET "$1" "$body")
  case $code in
    200)
      OBJECT_UID=$(grep -o '"uid":"[^"]*"' "$body" | head -1 | cut -d'"' -f4)
      if grep -q '"deletionTimestamp"' "$body"; then code=0; else code=1; fi
      ;;
    404) code=0 ;;
    401 | 403) say "may no longer read $1 (HTTP $code)"; code=3 ;;
    *) say "cannot read $1 (HTTP $code): $(head -c 300 "$body")"; code=2 ;;
  esac
  rm -f "$body"
  return "$code"
}

# Whether to give the node back now: 0 yes, 1 no, 2 cannot tell (ask again).
# The namespace first: a namespace deleted by hand deletes the DaemonSet too.
# DAEMONSET_UID is left for the events.
giving_back() {
  local ns ds
  object_state "/api/v1/namespaces/$POD_NAMESPACE"
  ns=$?
  object_state "/apis/apps/v1/namespaces/$POD_NAMESPACE/daemonsets/$DAEMONSET"
  ds=$?
  DAEMONSET_UID=$OBJECT_UID
  if [ "$GIVE_BACK" = torn-down ]; then
    case "$ns$ds" in
      0? | 3? | ?0 | ?3) say "the DaemonSet or its namespace is being deleted"; return 0 ;;
      11) return 1 ;;
      *) return 2 ;;
    esac
  fi
  case "$ns$ds" in
    10) say "the DaemonSet is being deleted"; return 0 ;;
    11 | 13 | 0? | 3?) return 1 ;;
    *) return 2 ;;
  esac
}

# event REASON NAME MESSAGE: a Warning event on the DaemonSet, which `pulumi up`
# and `pulumi destroy` show while they wait for it. One NAME is posted once.
event() {
  local out
  [ -n "${DAEMONSET_UID:-}" ] || return 0
  out=$(mktemp) || return 0
  api POST "/api/v1/namespaces/$POD_NAMESPACE/events" "$out" "$(printf '%s' \
    '{"apiVersion":"v1","kind":"Event","metadata":{"name":"'"$2"'"},' \
    '"involvedObject":{"apiVersion":"apps/v1","kind":"DaemonSet","namespace":"'"$POD_NAMESPACE"'",' \
    '"name":"'"$DAEMONSET"'","uid":"'"$DAEMONSET_UID"'"},"type":"Warning","reason":"'"$1"'",' \
    '"message":"'"$(json_text "$3")"'","source":{"component":"registry-node-trust"},"count":1}')" >/dev/null
  rm -f "$out"
}

# Text as the inside of a JSON string: backslashes and quotes escaped, control characters dropped.
json_text() { printf '%s' "$1" | tr -d '\000-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'; }

# After giving its own node back: the nodes whose pods are not Ready (a node that
# is down: the node controller marks its pods so) cannot give theirs back, and
# hold the DaemonSet's deletion. Each is named in a Warning event on the
# DaemonSet, which `pulumi destroy` shows while it waits.
name_stuck_nodes() {
  local pods node
  pods=$(mktemp) || return 0
  api GET "/api/v1/namespaces/$POD_NAMESPACE/pods?labelSelector=app.kubernetes.io%2Fname%3D$DAEMONSET" "$pods" >/dev/null ||
    return 0
  not_ready_nodes <"$pods" | while IFS= read -r node; do
    event NodeNotGivenBack "$DAEMONSET.$node" "node $node is not ready, so its pod cannot give it back and the DaemonSet stays; bring the node back and run pulumi destroy again, or, if it is gone for good, kubectl delete node $node and run it again"
    say "node $node is not ready: named in an event on the DaemonSet"
  done
  rm -f "$pods"
}

# The nodes, other than this one, of the pods in a PodList (JSON on stdin)
# whose Ready condition is not True.
not_ready_nodes() {
  awk -v me="$NODE_NAME" '
    { text = text $0 }
    END {
      n = split(text, items, /[{]"metadata":[{]"name":"/)
      for (i = 2; i <= n; i++) {
        node = ""; ready = ""
        if (match(items[i], /"nodeName":"[^"]*"/)) node = substr(items[i], RSTART + 12, RLENGTH - 13)
        if (match(items[i], /"type":"Ready",("observedGeneration":[0-9]+,)?"status":"[A-Za-z]*"/)) {
          ready = substr(items[i], RSTART, RLENGTH); sub(/.*"status":"/, "", ready); sub(/"$/, "", ready)
        }
        if (node != "" && node != me && ready != "True") print node
      }
    }' | sort -u
}

# The DaemonSet's uid, for events while it runs (a create that fails).
know_daemonset() { object_state "/apis/apps/v1/namespaces/$POD_NAMESPACE/daemonsets/$DAEMONSET"; DAEMONSET_UID=$OBJECT_UID; }

# Runs create until it succeeds. A failure is said in the log and, once per
# distinct message, in an event on the DaemonSet (what `pulumi up` shows); the
# next try comes after a pause that doubles up to a minute. A stop at any
# moment is handled by stop(), which gives the node back what create did.
create_until_done() {
  local err last pause rc reason
  err="${TMPDIR:-/tmp}/create.err"
  last="" pause=1
  while :; do
    (node_run create) 2>"$err" &
    CHILD=$!
    rc=0
    wait "$CHILD" || rc=$?
    CHILD=""
    cat "$err" >&2
    [ "$rc" -ne 0 ] || return 0
    reason=$(grep . "$err" | tail -1)
    if [ "$reason" != "$last" ]; then
      last=$reason
      know_daemonset
      event NodeNotTrusted "$DAEMONSET.$NODE_NAME.$(date +%s)" "node $NODE_NAME: the node program failed (status $rc): ${reason:-no message}; it is tried again until it succeeds (kubectl -n $POD_NAMESPACE logs ${POD_NAME:-its pod})"
    fi
    say "failed with status $rc; trying again in ${pause}s"
    sleep "$pause" &
    SLEEPER=$!
    wait "$SLEEPER" || true
    SLEEPER=""
    pause=$((pause * 2))
    if [ "$pause" -gt 60 ]; then pause=60; fi
  done
}

# Told to stop. A restart, a roll or a drain leaves the node as it is (the
# next pod's create is idempotent); only the DaemonSet's deletion (GIVE_BACK)
# gives the node back, whatever create had done by then, all of it or part.
# What cannot be told yet is asked again until the grace period runs out, and
# so is an undo that failed.
stop() {
  local answer
  trap '' TERM INT
  if [ -n "$SLEEPER" ]; then kill "$SLEEPER" 2>/dev/null; fi
  if [ -n "$CHILD" ]; then
    # The program, stopped half-way, leaves what its next run (or the delete below) finishes.
    kill "$CHILD" 2>/dev/null
    wait "$CHILD" 2>/dev/null
  fi
  rm -f "$READY"
  while :; do
    giving_back
    answer=$?
    case $answer in
      1) say "stopping; the DaemonSet stays, so the node keeps what it was given"; exit 0 ;;
      0)
        if (node_run delete); then
          say "node given back"
          if [ "$GIVE_BACK" = torn-down ]; then name_stuck_nodes; fi
          exit 0
        fi
        say "giving the node back failed; trying again"
        ;;
    esac
    sleep 1
  done
}

case ${1:-} in
  run)
    rm -f "$READY"
    trap stop TERM INT
    create_until_done
    : >"$READY"
    say "done: the node has what the DaemonSet gives it"
    while :; do
      sleep 3600 &
      SLEEPER=$!
      wait "$SLEEPER" || true
    done
    ;;
  ready) [ -e "$READY" ] ;;
  *) say "usage: pod.sh run|ready"; exit 2 ;;
esac
