# shellcheck shell=sh
# The garbage-collection CronJob's command (registry/maintenance.py). POSIX sh,
# as the registry image's busybox runs it. The pod runs on the node of the
# registry's pod, with its volume, env and config, and the Service's labels.
#
#   0. It refuses distribution 2, whose --delete-untagged deletes the platform
#      images and attestations of multi-arch and buildx images.
#   1. It creates $FLAG with O_EXCL: one collection at a time. A second job
#      (`kubectl create job --from=cronjob/...` beside the schedule) leaves
#      while the flag is renewed (every 30 s), and takes over only a flag
#      nobody renewed for 90 s (a job that died).
#   2. It serves read-only itself and waits the grace period: once Ready, the
#      Service sends pulls here too. It renews the flag while it works; the
#      registry's pod steps aside, turns read-only (registry_serve.sh) and
#      answers "ro <token>", the token being the flag's inode.
#   3. Immediately before it collects it checks that answer and that the flag
#      is still its own, and it keeps checking every second while
#      `registry garbage-collect --delete-untagged` runs: if the registry's pod
#      leaves read-only (it stopped, say), the collection is killed before that
#      pod could serve a push (it switches only after the grace period).
#   4. Whatever happened, it removes its own flag (never another job's), waits
#      until the registry's pod serves read-write again, waits the grace
#      period (the pod becomes Ready again) and only then stops its own server.
# While it runs, pushes get 405 (UNSUPPORTED) and pulls are served.
# config, dir, FLAG, MODE, grace and read_mode come from maintenance_common.sh.
# shellcheck disable=SC2154
keeper=""
# The flag is renewed this often; one not renewed for three times as long
# belongs to a job that died.
renew=${REGISTRY_GC_RENEW_SECONDS:-30}
ro=""
gc=""
token=""
status=1

log() { echo "registry-gc: $*" >&2; }

flag_token() { stat -c %i "$FLAG" 2>/dev/null; }

ours() { [ -n "$token" ] && [ "$(flag_token)" = "$token" ]; }

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
take_flag() {
  if (set -C; : >"$FLAG") 2>/dev/null; then token=$(flag_token); return 0; fi
  held=$(stat -c '%i %Y' "$FLAG" 2>/dev/null) || return 1
  t_left=$((3 * renew))
  while [ "$t_left" -gt 0 ]; do
    sleep 1
    t_left=$((t_left - 1))
    now=$(stat -c '%i %Y' "$FLAG" 2>/dev/null) || return 1
    if [ "$now" != "$held" ]; then
      log "another collection is running (it renews $FLAG); leaving it to finish, nothing collected"
      status=0
      exit 0
    fi
  done
  log "$FLAG was not renewed for $((3 * renew)) s: its job died; taking over"
  [ "$(flag_token)" = "${held%% *}" ] && rm -f "$FLAG"
  if (set -C; : >"$FLAG") 2>/dev/null; then token=$(flag_token); return 0; fi
  return 1
}

# shellcheck disable=SC2317  # run by the EXIT trap
finish() {
  trap - EXIT
  if [ -n "$gc" ] && kill -KILL "$gc" 2>/dev/null; then wait "$gc"; log "collection stopped before it finished"; fi
  [ -n "$keeper" ] && kill "$keeper" 2>/dev/null
  if ours; then
    rm -f "$FLAG"
    if ! wait_until serving_rw 120; then log "the registry's pod did not report read-write within 120s"; status=1; fi
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
if ! take_flag; then log "could not create $FLAG; nothing collected"; exit 1; fi
REGISTRY_STORAGE_MAINTENANCE_READONLY='{"enabled": true}' registry serve "$config" &
ro=$!
sleep "$grace"
kill -0 "$ro" 2>/dev/null || { log "the read-only server did not start"; exit 1; }
touch "$FLAG"
(while sleep "$renew"; do touch "$FLAG"; done) &
keeper=$!
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
