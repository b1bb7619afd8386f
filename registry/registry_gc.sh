# shellcheck shell=sh
# The garbage-collection CronJob's command (registry/maintenance.py). POSIX sh,
# as the registry image's busybox runs it. The pod runs on the node of the
# registry's pod, with its volume, env and config, and the Service's labels.
#
#   0. It refuses distribution 2, whose --delete-untagged deletes the platform
#      images and attestations of multi-arch and buildx images.
#   1. It creates $LOCK with O_EXCL: one collection at a time. A second job
#      (`kubectl create job --from=cronjob/...` beside the schedule) leaves
#      while the lock is renewed (every 30 s), and takes over only a lock
#      nobody renewed for 90 s (a job that died).
#   2. It serves read-only itself and waits the grace period: once Ready, the
#      Service sends pulls here too. Only then does it raise $FLAG, and it
#      renews both while it works; the registry's pod steps aside, turns
#      read-only (registry_serve.sh) and answers "ro <token>", the token being
#      the flag's inode.
#   3. Immediately before it collects it checks that answer and that the flag
#      is still its own, and it keeps checking every second while
#      `registry garbage-collect --delete-untagged` runs: if the registry's pod
#      leaves read-only (it stopped, say), the collection is killed before that
#      pod could serve a push (it switches only after the grace period).
#   4. Whatever happened, it removes its own flag and lock (never another job's), waits
#      until the registry's pod serves read-write again, waits the grace
#      period (the pod becomes Ready again) and only then stops its own server.
# While it runs, pushes get 405 (UNSUPPORTED) and pulls are served.
# config, dir, FLAG, MODE, grace and read_mode come from maintenance_common.sh.
# shellcheck disable=SC2154
# One collection at a time: created with O_EXCL by the job that runs.
LOCK="$dir/collecting.lock"
keeper=""
# The lock is renewed this often; one not renewed for three times as long
# belongs to a job that died.
renew=${REGISTRY_GC_RENEW_SECONDS:-30}
ro=""
gc=""
token=""
lock=""
status=1

log() { echo "registry-gc: $*" >&2; }

flag_token() { stat -c %i "$FLAG" 2>/dev/null; }

lock_token() { stat -c %i "$LOCK" 2>/dev/null; }

# This job holds the lock (another may have taken over a lock it thought dead).
holding() { [ -n "$lock" ] && [ "$(lock_token)" = "$lock" ]; }

ours() { holding && [ -n "$token" ] && [ "$(flag_token)" = "$token" ]; }

read_only_for_us() {
  read_mode
  [ "$mode_word" = ro ] && [ "$mode_token" = "$token" ] && ours
}

wait_until() {
  w_left=$2
  until "$1"; do
    [ "$w_left" -gt 0 ] || return 1
    w_left=$((w_left - 1))
    sleep 1
  done
}

# shellcheck disable=SC2317  # called by wait_until
serving_rw() { read_mode; [ "$mode_word" = rw ]; }

# O_EXCL (noclobber): exactly one job creates it. Needs an inode, no block.
take_lock() {
  if (set -C; : >"$LOCK") 2>/dev/null; then lock=$(lock_token); return 0; fi
  held=$(stat -c '%i %Y' "$LOCK" 2>/dev/null) || return 1
  t_left=$((3 * renew))
  while [ "$t_left" -gt 0 ]; do
    sleep 1
    t_left=$((t_left - 1))
    if ! now=$(stat -c '%i %Y' "$LOCK" 2>/dev/null); then
      log "another collection just finished; nothing collected"
      status=0
      exit 0
    fi
    if [ "$now" != "$held" ]; then
      log "another collection is running (it renews $LOCK); leaving it to finish, nothing collected"
      status=0
      exit 0
    fi
  done
  log "$LOCK was not renewed for $((3 * renew)) s: its job died; taking over"
  [ "$(lock_token)" = "${held%% *}" ] && rm -f "$LOCK"
  if (set -C; : >"$LOCK") 2>/dev/null; then lock=$(lock_token); return 0; fi
  return 1
}

# A new flag, put in place of a dead job's in one rename (no moment without
# one); an empty file needs an inode, no block.
raise_flag() {
  : >"$FLAG.new" && mv -f "$FLAG.new" "$FLAG" || return 1
  token=$(flag_token)
}

# shellcheck disable=SC2317  # run by the EXIT trap
finish() {
  trap - EXIT
  if [ -n "$gc" ] && kill -KILL "$gc" 2>/dev/null; then wait "$gc"; log "collection stopped before it finished"; fi
  [ -n "$keeper" ] && kill "$keeper" 2>/dev/null
  if holding; then
    # While this job holds the lock, a flag is its own, or a dead job's.
    if [ -e "$FLAG" ]; then
      rm -f "$FLAG"
      if ! wait_until serving_rw 120; then log "the registry's pod did not report read-write within 120s"; status=1; fi
    fi
    rm -f "$LOCK"
  fi
  if [ -n "$ro" ]; then
    sleep "$grace"
    kill -TERM "$ro" 2>/dev/null
    wait "$ro"
  fi
  exit "$status"
}

case "$(registry --version 2>&1)" in
  *docker/distribution*)
    log "this image runs distribution 2 ($(registry --version 2>&1)), whose garbage-collect --delete-untagged" \
      "deletes the platform images and attestations of multi-arch and buildx images; nothing collected." \
      "Use a registry:3 image (registry:image)"
    exit 1 ;;
esac

mkdir -p "$dir"
trap finish EXIT
trap 'exit 1' TERM INT
if ! take_lock; then log "could not create $LOCK; nothing collected"; exit 1; fi
if [ ! -d "$REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY/docker/registry/v2/repositories" ]; then
  # garbage-collect fails on a registry nothing was pushed to yet ("Path not
  # found"); and the registry need not turn read-only for nothing.
  log "nothing was pushed yet; nothing to collect"
  status=0
  exit 0
fi
(while sleep "$renew"; do touch "$LOCK"; [ -e "$FLAG" ] && touch "$FLAG"; done) &
keeper=$!
REGISTRY_STORAGE_MAINTENANCE_READONLY='{"enabled": true}' registry serve "$config" &
ro=$!
sleep "$grace"
kill -0 "$ro" 2>/dev/null || { log "the read-only server did not start"; exit 1; }
if ! raise_flag; then log "could not create $FLAG; nothing collected"; exit 1; fi
log "waiting for the registry's pod to turn read-only"
if ! wait_until read_only_for_us 300; then
  read_mode
  log "the registry's pod did not turn read-only within 300s (its mode: ${mode_word:-none} ${mode_token:-}; its log says why); nothing collected"
  exit 1
fi
log "collecting"
registry garbage-collect --delete-untagged "$config" &
gc=$!
while kill -0 "$gc" 2>/dev/null; do
  if ! read_only_for_us; then
    kill -KILL "$gc" 2>/dev/null
    wait "$gc"
    gc=""
    log "the registry's pod left read-only (its mode: ${mode_word:-none}), or the flag is no longer ours; collection stopped"
    exit 1
  fi
  sleep 1
done
if wait "$gc"; then status=0; else status=$?; fi
gc=""
exit "$status"
