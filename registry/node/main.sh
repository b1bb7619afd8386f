# registry node trust, main: one run, create or delete, under the lock.

WORK=$(mktemp -d "${TMPDIR:-/tmp}/registry-node-trust.XXXXXX") || die "cannot make a temporary directory"
take_lock
sweep_temps
case $REG_ACTION in
  create) run_create ;;
  delete) run_delete ;;
  *) die "REG_ACTION must be create or delete, not '$REG_ACTION'" ;;
esac
