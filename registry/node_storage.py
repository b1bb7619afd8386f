"""storage: node — the registry's data in a folder on one node, as the seed guide keeps it.

For clusters without a storage provisioner (a bare kubeadm cluster has none):
over the same SSH connection as node trust, the folder is prepared for the
registry's user (uid and gid 1000, mode 0700), and the pod is pinned to that
node with a hostPath volume. `keepData` (default true) decides whether
`pulumi destroy` leaves the folder, and with it every image, for a later
`pulumi up` to find again.

The folder is the program's only when it made it (a marker file inside says
so), or when it was empty: a folder with someone else's files is refused,
and delete never removes a folder that is not the program's.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from .node_script import as_root
from .node_trust import SshAccess, connection
from .settings import Node

# The registry image's user (the Deployment's runAsUser and fsGroup).
REGISTRY_UID = 1000
MARKER = ".registry-storage"


def create_script(path: str) -> str:
    """Make the folder the registry's; refuse one that holds someone else's files.

    Runs as root in a folder uid 1000 writes to: nothing here follows a link.
    The folder and the marker must not be links (uid 1000 can replace the
    marker with one to /etc/shadow), and chown -h changes a link, never its
    target, should one appear between the test and the chown.
    """
    p = shlex.quote(path)
    m = shlex.quote(f"{path}/{MARKER}")
    return (
        "set -eu\n"
        f'if [ -L {p} ] || {{ [ -e {p} ] && [ ! -d {p} ]; }}; then echo "registry storage: {path} exists and is '
        'not a folder; choose another registry:storagePath" >&2; exit 1; fi\n'
        f'if [ -L {m} ] || {{ [ -e {m} ] && [ ! -f {m} ]; }}; then echo "registry storage: {path}/{MARKER} is not '
        "a plain file (a link, say); it is not followed. "
        f'Remove it (rm {path}/{MARKER}) and run again" >&2; exit 1; fi\n'
        f'if [ -d {p} ] && [ ! -e {m} ] && [ -n "$(ls -A {p})" ]; then echo "registry storage: {path} already '
        "holds files that are not the registry's; choose another registry:storagePath, or empty it\" >&2; exit 1; fi\n"
        # A new or empty folder is root's alone while the marker is made, so
        # that no link can be planted where the marker goes (rm: one planted
        # before the chown).
        f"if [ ! -e {m} ]; then mkdir -p {p}; chown -h 0:0 {p}; chmod 700 {p}; rm -f {m}; : >{m}; fi\n"
        f"chown -h {REGISTRY_UID}:{REGISTRY_UID} {p} {m}\n"
        f"chmod 700 {p}\n"
    )


def delete_script(path: str, keep: bool) -> str:
    """Keep the folder (keepData), or remove it if it is the program's."""
    p = shlex.quote(path)
    m = shlex.quote(f"{path}/{MARKER}")
    if keep:
        return f'echo "registry storage: kept {path} (registry:keepData true)" >&2\n'
    return (
        "set -eu\n"
        f'if [ -e {m} ]; then rm -rf -- {p}; echo "registry storage: removed {path}" >&2; '
        f'else echo "registry storage: left {path}, which is not the registry\'s" >&2; fi\n'
    )


@dataclass
class NodeStorageArgs:
    node: Node
    path: str
    # Whether destroy leaves the folder and its images (registry:keepData).
    keep: bool
    ssh: SshAccess


class NodeStorage(pulumi.ComponentResource):
    """The data folder on `storageNode`, prepared over SSH."""

    command: command.remote.Command

    def __init__(self, name: str, args: NodeStorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("registry:index:NodeStorage", name, None, opts)
        node, path = args.node, args.path
        self.command = command.remote.Command(
            f"{name}-folder",
            connection=connection(args.ssh, node),
            create=as_root(create_script(path), node.user),
            # keepData changes the delete in place: the stored delete is the newest.
            delete=as_root(delete_script(path, args.keep), node.user),
            # Another folder or another node: the old delete runs there, the new
            # create here. How the node is reached (host, port, user) is not a
            # trigger: with keepData false the replacement's delete would wipe
            # the images; a changed connection just re-runs create, which is
            # idempotent (pulumi-command's update runs create).
            triggers=[path, node.name],
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.register_outputs({})
