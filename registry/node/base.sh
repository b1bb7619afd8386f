# registry node trust: makes a node resolve and trust the cluster's registry,
# and undoes exactly that. POSIX sh (dash, bash or busybox ash), run as root.
#
# The program is this folder's parts joined in order by registry/node_script.py:
# common (settings, logging, bounded steps, the lock, the state root's owner),
# base (what this program names), state (the manifest, backups, pending work,
# owners), files (/etc/hosts and shared files), trust (trust stores and
# runtimes), create, delete, main.
#
# It arrives on standard input; the command line sets its parameters, every
# value quoted (registry/node_script.py):
#   REG_ACTION         create or delete
#   REG_NAME REG_PORT  the name and port in image references (image-registry 5000)
#   REG_STACK          the stack that asks (organization/project/stack)
#   REG_ENTRY          its node entry (the `name` in registry:nodes)
#   REG_IP             the Service's clusterIP the name resolves to (create only)
#   REG_RUNTIME        auto | docker | containerd | crio | k3s (create only)
#   REG_CA             the CA certificates, one PEM bundle, newest first (create only):
#                      caGeneration N and N-1 during a rotation
#   STEP_TIMEOUT       seconds any one step may take
#   FAIL_AFTER         tests only: a step after which create stops with an error
#   KILL_AFTER_RENAME  tests only: create is killed right after that many renames
#   CREATE_STEPS       the steps of create, in order (registry/node_script.py owns them)
# HOSTS_AWK and BLOCK_AWK, set above this text, are hosts.awk and block.awk.
#
# What it owns, and how delete finds it again:
#   /etc/hosts         a block between "# BEGIN/END registry-node-trust <name>:<port>"
#                      lines; unmanaged lines mapping the name are commented out with
#                      a prefix that delete strips again.
#   registries.yaml    (k3s) a block between the same lines; the rest is the user's.
#   the trust store    one file per CA certificate, named by its fingerprint, so
#                      a rotation adds the new one before the old one goes.
#   every other file   listed in $STATE/manifest before it is written; a file that
#                      was there before is copied to $STATE/backup first and put back
#                      by delete. Directories created are listed and removed if empty.
#   $STATE/owners      one line per stack node entry that uses the endpoint: delete
#                      undoes the changes only when the last one goes.
#   $STATE/pending-*   work a run still owes (a refresh, a restart), written before
#                      the change that makes it necessary: a killed run is finished
#                      by the next one.

ID="$REG_NAME:$REG_PORT"
LOG_TAG="registry-node-trust $ID"
TAG="registry-node-trust $ID"
BEGIN_MARK="# BEGIN $TAG"
END_MARK="# END $TAG"
DISABLED_PREFIX="# disabled by $TAG: "
KEPT_SUFFIX=" # kept by $TAG"
STATE="$STATE_ROOT/${REG_NAME}_$REG_PORT"
MANIFEST="$STATE/manifest"
OWNERS="$STATE/owners"
OWNER="$REG_STACK $REG_ENTRY"
# Trust-store files: $CA_BASE-<16 hex of the certificate's sha256>.crt
# (earlier versions wrote one file, $CA_BASE.crt).
CA_BASE="registry-node-trust-$REG_NAME-$REG_PORT"
K3S_REGISTRIES=/etc/rancher/k3s/registries.yaml
K3S_CA="/etc/rancher/k3s/registry-node-trust/$ID/ca.crt"
# k3s's own containerd reads hosts.toml here at each pull (k3s makes it its config_path):
# trust without a restart, which k3d's nodes (k3s as pid 1, no init system) cannot do.
K3S_CERTS_D=/var/lib/rancher/k3s/agent/etc/containerd/certs.d
