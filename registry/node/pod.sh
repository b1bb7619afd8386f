# registry node trust, the DaemonSet's side (nodeTrust: cluster). It runs in
# the pod's container, never on the node itself: it hands the node program
# (the same bytes and parameters as over SSH) to the host's root, mounted at
# /host, through chroot, and decides when the node is to be given back.
#
#   pod.sh create   the init container: trust the registry (and, on the
#                   storage node, prepare the data folder), then exit
#   pod.sh wait     the main container: sleep; told to stop, give the node
#                   back if, and only if, the DaemonSet itself is being deleted
#
# Its files come from the ConfigMap mounted at $FILES: program, create,
# delete, run, and storage-create/storage-delete with storage node. The
# environment names the node (NODE_NAME), the DaemonSet (DAEMONSET,
# POD_NAMESPACE) and the storage node (STORAGE_NODE, may be empty).
set -u

FILES=${FILES:-/etc/registry-node-trust}
HOST=${HOST_ROOT:-/host}
ACCOUNT=${ACCOUNT:-/var/run/secrets/kubernetes.io/serviceaccount}

say() { printf 'registry-node-trust[%s]: %s\n' "${NODE_NAME:-?}" "$*" >&2; }

# node_run ACTION: the node program with ACTION's parameters, as root in the
# host's root; the program on stdin, as over SSH.
node_run() {
  chroot "$HOST" /bin/sh -c "$(cat "$FILES/$1")
$(cat "$FILES/run")" <"$FILES/program"
}

# storage_run ACTION: the data folder's script, on the storage node only.
storage_run() {
  if [ -n "${STORAGE_NODE:-}" ] && [ "$STORAGE_NODE" = "${NODE_NAME:-}" ]; then
    chroot "$HOST" /bin/sh -c "$(cat "$FILES/storage-$1")"
  fi
}

# api METHOD PATH OUT [ACCEPT] [BODY]: one request to the API server as the pod's
# service account; the answer's body goes to OUT, its HTTP status to stdout. The
# token goes to curl on stdin, never on a command line.
api() {
  local token method="$1" path="$2" out="$3" accept="${4:-application/json}" body="${5:-}"
  token=$(cat "$ACCOUNT/token") || return 1
  if [ -n "$body" ]; then set -- -H "Content-Type: application/json" --data-binary "$body"; else set --; fi
  # A user agent of its own: the API server indents its JSON for curl's, which the parsing here does not expect.
  printf 'header = "Authorization: Bearer %s"\n' "$token" | curl -sS -K - --max-time 10 -A registry-node-trust \
    --cacert "$ACCOUNT/ca.crt" -X "$method" -o "$out" -w '%{http_code}' -H "Accept: $accept" "$@" \
    "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT$path"
}

# Whether our DaemonSet is being deleted: 0 yes (a deletionTimestamp, or gone),
# 1 no, 2 cannot tell. Its uid is left in DAEMONSET_UID.
daemonset_deleting() {
  local code body
  body=$(mktemp) || return 2
  code=$(api GET "/apis/apps/v1/namespaces/$POD_NAMESPACE/daemonsets/$DAEMONSET" "$body")
  case $code in
    200)
      DAEMONSET_UID=$(grep -o '"uid":"[^"]*"' "$body" | head -1 | cut -d'"' -f4)
      if grep -q '"deletionTimestamp"' "$body"; then code=0; else code=1; fi
      ;;
    404) DAEMONSET_UID=""; code=0 ;;
    *) say "cannot read DaemonSet $POD_NAMESPACE/$DAEMONSET (HTTP $code): $(head -c 300 "$body")"; code=2 ;;
  esac
  rm -f "$body"
  return "$code"
}

# After giving its own node back: the nodes whose pods are not Ready (a node that
# is down: the node controller marks its pods so) cannot give theirs back, and
# hold the DaemonSet's deletion. Each is named in a Warning event on the
# DaemonSet, which `pulumi destroy` shows while it waits.
name_stuck_nodes() {
  local pods event node
  [ -n "${DAEMONSET_UID:-}" ] || return 0
  pods=$(mktemp) || return 0
  event=$(mktemp) || return 0
  api GET "/api/v1/namespaces/$POD_NAMESPACE/pods?labelSelector=app.kubernetes.io%2Fname%3D$DAEMONSET" "$pods" >/dev/null ||
    return 0
  not_ready_nodes <"$pods" | while IFS= read -r node; do
    api POST "/api/v1/namespaces/$POD_NAMESPACE/events" "$event" "" "$(printf '%s' \
      '{"apiVersion":"v1","kind":"Event","metadata":{"name":"'"$DAEMONSET.$node"'"},' \
      '"involvedObject":{"apiVersion":"apps/v1","kind":"DaemonSet","namespace":"'"$POD_NAMESPACE"'",' \
      '"name":"'"$DAEMONSET"'","uid":"'"$DAEMONSET_UID"'"},"type":"Warning","reason":"NodeNotGivenBack",' \
      '"message":"node '"$node"' is not ready, so its pod cannot give it back and the DaemonSet stays; bring the node back and run pulumi destroy again, or, if it is gone for good, kubectl delete node '"$node"' and run it again",' \
      '"source":{"component":"registry-node-trust"},"count":1}')" >/dev/null
    say "node $node is not ready: named in an event on the DaemonSet"
  done
  rm -f "$pods" "$event"
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

# Told to stop. A restart, a roll or a drain leaves the node as it is (the
# next pod's create run is idempotent); only the DaemonSet's deletion gives
# the node back. What cannot be told yet is asked again until the grace
# period runs out, and so is an undo that failed.
stop() {
  local answer
  trap '' TERM INT
  kill "$SLEEPER" 2>/dev/null
  while :; do
    daemonset_deleting
    answer=$?
    case $answer in
      1) say "stopping; the DaemonSet stays, so the node keeps the registry's trust"; exit 0 ;;
      0)
        if node_run delete && storage_run delete; then
          say "the DaemonSet is being deleted: node given back"
          name_stuck_nodes
          exit 0
        fi
        say "giving the node back failed; trying again"
        ;;
    esac
    sleep 2
  done
}

case ${1:-} in
  create)
    node_run create || exit 1
    storage_run create || exit 1
    say "node trusts the registry"
    ;;
  wait)
    SLEEPER=""
    trap stop TERM INT
    while :; do
      sleep 3600 &
      SLEEPER=$!
      wait "$SLEEPER" || true
    done
    ;;
  *) say "usage: pod.sh create|wait"; exit 2 ;;
esac
