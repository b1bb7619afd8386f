# shellcheck shell=sh
# The garbage-collection CronJob's command (registry/maintenance.py). POSIX sh,
# as the registry image's busybox runs it. The pod runs on the node of the
# registry's pod, with its volume, env and config, and the Service's labels.
#
#   1. It serves read-only itself and waits the grace period: once Ready, the
#      Service sends pulls here too.
#   2. It raises $FLAG on the data volume and renews it while it works; the
#      registry's pod steps aside and turns read-only (registry_serve.sh), and
#      it waits for that to be reported in $MODE.
#   3. It runs `registry garbage-collect --delete-untagged`: no process can
#      write to the storage meanwhile, so no upload in flight loses a layer.
#   4. Whatever happened, it drops the flag, waits until the registry's pod
#      serves read-write again, waits the grace period (the pod becomes Ready
#      again) and only then stops its own read-only server.
# While it runs, pushes get 405 (UNSUPPORTED) and pulls are served.
# config, dir, FLAG, MODE and grace come from maintenance_common.sh, put before it.
# shellcheck disable=SC2154
keeper=""
status=1

log() { echo "registry-gc: $*" >&2; }

mode_is() { [ "$(cat "$MODE" 2>/dev/null)" = "$1" ]; }

wait_for_mode() {
  w_left=$2
  until mode_is "$1"; do
    [ "$w_left" -gt 0 ] || return 1
    w_left=$((w_left - 1))
    sleep 1
  done
}

# shellcheck disable=SC2317  # run by the EXIT trap
finish() {
  trap - EXIT
  [ -n "$keeper" ] && kill "$keeper" 2>/dev/null
  rm -f "$FLAG"
  if ! wait_for_mode rw 120; then log "the registry's pod did not report read-write within 120s"; status=1; fi
  sleep "$grace"
  kill -TERM "$ro" 2>/dev/null
  wait "$ro"
  exit "$status"
}

mkdir -p "$dir"
REGISTRY_STORAGE_MAINTENANCE_READONLY='{"enabled": true}' registry serve "$config" &
ro=$!
trap finish EXIT
trap 'exit 1' TERM INT
sleep "$grace"
kill -0 "$ro" 2>/dev/null || { log "the read-only server did not start"; exit 1; }
touch "$FLAG"
(while sleep 30; do touch "$FLAG"; done) &
keeper=$!
log "waiting for the registry's pod to turn read-only"
if ! wait_for_mode ro 300; then log "the registry's pod did not turn read-only within 300s; nothing collected"; exit 1; fi
log "collecting"
if registry garbage-collect --delete-untagged "$config"; then status=0; else status=$?; fi
exit "$status"
