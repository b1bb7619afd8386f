# shellcheck shell=sh
# Put before registry_serve.sh and registry_gc.sh (registry/maintenance.py): the
# files on the data volume through which the two talk, and the grace period.
# $1: the registry's config file.
set -u
config=$1
dir="$REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY/.maintenance"
FLAG="$dir/collecting"
MODE="$dir/mode"
grace=${REGISTRY_GC_GRACE_SECONDS:-10}
