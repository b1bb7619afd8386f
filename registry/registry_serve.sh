# shellcheck shell=sh
# The registry container's command when garbage collection is scheduled
# (registry/maintenance.py). POSIX sh, as the registry image's busybox runs it.
#
# Serves read-write; while a collection holds $FLAG on the data volume
# (registry_gc.sh, the CronJob's pod), it steps aside and serves read-only:
#   1. it writes "switching" to $MODE: the readiness probe fails, the Service
#      stops sending new connections here (the job's pod serves pulls meanwhile);
#   2. after the grace period it stops the server, which drains what is in
#      flight (REGISTRY_HTTP_DRAINTIMEOUT), and starts it read-only, so that no
#      push, not even on a connection opened before, can write during collection;
#   3. it writes "ro"; the job waits for that before it collects.
# When the flag goes (or grows stale: a job that died), it switches back the
# same way and writes "rw", and the pod is Ready again.
# config, dir, FLAG, MODE and grace come from maintenance_common.sh, put before it.
# shellcheck disable=SC2154
pid=""

serve() {
  if [ "$1" = ro ]; then
    REGISTRY_STORAGE_MAINTENANCE_READONLY='{"enabled": true}' registry serve "$config" &
  else
    registry serve "$config" &
  fi
  pid=$!
}

# A flag not renewed for 5 minutes belongs to a job that died: serve read-write.
wanted() {
  if [ -n "$(find "$FLAG" -mmin -5 2>/dev/null)" ]; then echo ro; else echo rw; fi
}

say() { printf '%s\n' "$1" >"$MODE.new" && mv -f "$MODE.new" "$MODE"; }

stop() {
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"
}

trap 'stop; exit 0' TERM INT
mkdir -p "$dir"
mode=$(wanted)
serve "$mode"
sleep 1
say "$mode"
while :; do
  sleep 1
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid"
    exit $?
  fi
  want=$(wanted)
  [ "$want" = "$mode" ] && continue
  echo "registry-serve: switching to $want" >&2
  say switching
  sleep "$grace"
  stop
  mode=$want
  serve "$mode"
  sleep 1
  say "$mode"
done
