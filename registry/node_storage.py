"""storage: node — the registry's data in a folder on one node, as the seed guide keeps it.

For clusters without a storage provisioner (a bare kubeadm cluster has none):
the folder is prepared for the registry's user (uid and gid 1000, mode 0700),
and the pod is pinned to that node with a hostPath volume. `keepData`
(default true) decides whether `pulumi destroy` leaves the folder, and with it
every image, for a later `pulumi up` to find again.

The program that does it is registry/node/storage.sh: it arrives on stdin, as
the node-trust program does, over SSH here (nodeTrust ssh) or from a
DaemonSet's pod (nodeTrust cluster, registry/cluster_trust.py). A folder with
someone else's files is refused, and a folder is removed only by the delete
of the last claim on it, with keepData false: never because the registry
moved (another path, another node), never because the stack switched how it
reaches the node, and never by a release before this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from .config.model import Node
from .names import stack_identity
from .node_script import StorageParams, remote_command, storage_claim, storage_program, storage_script
from .node_trust import SshAccess, connection

# The registry image's user (the Deployment's runAsUser and fsGroup).
REGISTRY_UID = 1000


def folder_command(action: str, params: StorageParams, user: str) -> str:
    """The command line: the parameters, then the program on stdin, as root."""
    return remote_command(storage_script(action, params), user)


@dataclass
class NodeStorageArgs:
    node: Node
    path: str
    # Whether destroy leaves the folder and its images (registry:keepData).
    keep: bool
    ssh: SshAccess
    # The node-trust commands: the folder is prepared after them, so that the
    # node program's own state root exists, root's, before any folder is uid 1000's.
    after: Sequence[pulumi.Resource] = ()


class NodeStorage(pulumi.ComponentResource):
    """The data folder on `storageNode`, prepared over SSH."""

    command: command.remote.Command

    def __init__(self, name: str, args: NodeStorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("registry:index:NodeStorage", name, None, opts)
        node = args.node
        params = StorageParams(path=args.path, keep=args.keep, claim=storage_claim(stack_identity(), "ssh"))
        self.command = command.remote.Command(
            f"{name}-folder",
            connection=connection(args.ssh, node),
            create=folder_command("create", params, node.user),
            # keepData changes the delete in place: the stored delete is the newest.
            delete=folder_command("delete", params, node.user),
            stdin=storage_program(),
            # No replacement, ever: pulumi-command (remote/commandController.go)
            # runs the old delete first on one, which would remove the images with
            # keepData false. Any change is an update, which runs create again
            # (idempotent) and stores the new delete. Another path or node gets its
            # folder that way; the old one is left, images and all. Releases before
            # this one set triggers (the path and the node's entry name), which are
            # ignored so that their stacks update in place too.
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after), ignore_changes=["triggers"]),
        )
        self.register_outputs({})
