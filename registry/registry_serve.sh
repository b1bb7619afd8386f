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
#   3. it writes "ro <token>", the token being the flag's inode; the job
#      collects only while the mode names its own flag.
# When the flag goes (or is not renewed for $stale_seconds: a job that died), it
# switches back the same way and writes "rw", and the pod is Ready again. When
# the pod stops it writes "stopped", so that a collection still running stops
# before a new pod (gcSchedule turned off, say) serves read-write.
# config, dir, FLAG, MODE, grace and read_mode come from maintenance_common.sh.
# shellcheck disable=SC2154
pid=""
# A flag not renewed for this long (by this pod's own clock) was left by a job
# that died; the job renews it every 30 s.
stale_seconds=${REGISTRY_GC_STALE_SECONDS:-300}
seen=""
seen_at=0
want=rw
token=""

serve() {
  if [ "$1" = ro ]; then
    REGISTRY_STORAGE_MAINTENANCE_READONLY='{"enabled": true}' registry serve "$config" &
  else
    registry serve "$config" &
  fi
  pid=$!
}

# Sets want (rw or ro) and token. A flag counts while its inode or time keeps
# changing by this pod's own clock, so that a volume server whose clock is off
# (NFS) neither ends a collection early nor keeps a dead one's flag alive; a
# flag first seen with an old time counts from that time.
check_flag() {
  stamp=$(stat -c '%i %Y' "$FLAG" 2>/dev/null) || { seen="" want=rw token=""; return 0; }
  now=$(date +%s)
  if [ "$stamp" != "$seen" ]; then
    if [ -z "$seen" ] && [ "${stamp#* }" -lt "$now" ]; then seen_at=${stamp#* }; else seen_at=$now; fi
    seen=$stamp
  fi
  if [ $((now - seen_at)) -lt "$stale_seconds" ]; then want=ro token=${stamp%% *}; else want=rw token=""; fi
}

# Written in place at a fixed width: no block is allocated, so the handshake
# works on a full volume, where a new file or a rename would fail.
say() { printf '%-31s\n' "$1" | dd of="$MODE" conv=notrunc 2>/dev/null; }

announce() {
  if [ "$1" = ro ]; then say "ro $2"; else say rw; fi
}

stop() {
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"
}

trap 'say stopped; stop; exit 0' TERM INT
mkdir -p "$dir"
# A mode left by the pod before this one must not count: nothing serves yet.
say starting
check_flag
mode=$want
serve "$mode"
sleep 1
announce "$mode" "$token"
while :; do
  sleep 1
  if ! kill -0 "$pid" 2>/dev/null; then
    say stopped
    wait "$pid"
    exit $?
  fi
  check_flag
  if [ "$want" = "$mode" ]; then
    # Read-only already, for a flag that a new job took over: answer its token.
    read_mode
    [ "$mode" = ro ] && [ "$mode_token" != "$token" ] && announce ro "$token"
    continue
  fi
  # Never serve read-only while the mode says read-write (the pod would stay
  # Ready and refuse pushes): no switch unless the announcement was written.
  if ! say switching; then
    echo "registry-serve: cannot write $MODE; staying $mode" >&2
    continue
  fi
  echo "registry-serve: switching to $want" >&2
  sleep "$grace"
  stop
  mode=$want
  serve "$mode"
  sleep 1
  announce "$mode" "$token"
done
