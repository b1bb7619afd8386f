# registry node trust, main: one run, create or delete, under the lock.

WORK=$(mktemp -d "${TMPDIR:-/tmp}/registry-node-trust.XXXXXX") || die "cannot make a temporary directory"
take_lock
# What the state holds is acted on as root: it must be root's alone.
own_folder "$STATE_ROOT"
own_folder "$STATE"
sweep_temps
case $REG_ACTION in
  create) run_create ;;
  delete) run_delete ;;
  *) die "REG_ACTION must be create or delete, not '$REG_ACTION'" ;;
esac
