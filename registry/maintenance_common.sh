# shellcheck shell=sh
# Put before registry_serve.sh and registry_gc.sh (registry/maintenance.py): the
# files on the data volume through which the two talk, and the grace period.
# $1: the registry's config file (the registry:3 image's; the registry:2
# image keeps it elsewhere).
set -u
config=$1
[ -f "$config" ] || config=/etc/docker/registry/config.yml
dir="$REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY/.maintenance"
# Raised by the collection that holds $LOCK, once its own read-only server
# serves; its inode is the token the registry's pod answers with.
FLAG="$dir/collecting"
# What the registry's pod does now, one line: rw, "ro <token>", switching,
# starting or stopped.
MODE="$dir/mode"
grace=${REGISTRY_GC_GRACE_SECONDS:-10}

# The mode's first word, and its token (after "ro").
# shellcheck disable=SC2034,SC2317  # each script uses its part, some by name
read_mode() {
  mode_word="" mode_token=""
  read -r mode_word mode_token <"$MODE" 2>/dev/null || true
}
