"""The settings of how nodes come to trust the registry: a DaemonSet, or SSH to the listed
nodes. One field per config key (registry/config/keys.py declares how)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from .checks import image_reference
from .keys import setting
from .node_checks import BASTION_FIELDS, node_list
from .types import Bastion, Node, TrustMode
from .validators import (
    Check,
    all_of,
    boolean,
    json_object,
    matches,
    one_of,
    text,
)

# nodeTrust: cluster: the DaemonSet's image needs sh, chroot and curl, which
# this one has (Alpine's busybox and curl), nothing else. It runs as root on
# every node, so it is pinned by digest: whoever could push the tag again
# would otherwise run their code there at the next pod start. The digest is
# the tag's multi-arch index, as public projects that pull it anonymously
# record it (Docker Hub is out of this project's machines' reach).
DEFAULT_NODE_TRUST_IMAGE = (
    "curlimages/curl:8.12.1@sha256:94e9e444bcba979c2ea12e27ae39bee4cd10bc7041a472c4727a558e213744e6"
)


def trust_mode(raw: Any, where: str, problems: list[str]) -> Any:
    value = one_of(*TrustMode)(raw, where, problems)
    return value if value is not raw else TrustMode(raw)


def _object(shape: str, check: Check) -> Check:
    return all_of(json_object(shape), check)


@dataclass(frozen=True)
class NodeSettings:
    node_trust: TrustMode = setting(
        "nodeTrust",
        trust_mode,
        TrustMode.SSH,
        "How nodes come to trust the registry: ssh (each of nodes) or cluster (a DaemonSet, every node, no SSH).",
        doc=(
            "how nodes come to trust the registry and find it by name: `ssh` runs the node program "
            "over SSH on each entry of `nodes`; `cluster` runs the same program on every node of the "
            "cluster, present and future, from a DaemonSet, with no SSH, no `nodes` and no key (see "
            "[Trust without SSH](operations.md#trust-without-ssh-nodetrust-cluster)). With `cluster`,"
            " the SSH keys (`sshPrivateKey`, `sshKeyPassphrase`, `sshAgent`, `sshBastion`) are "
            "refused as unused, `storageNode` names any node of the cluster, and `namespace` is at "
            "most 52 characters (the DaemonSet's namespace is `<namespace>-node-trust`)"
        ),
    )
    node_trust_image: str = setting(
        "nodeTrustImage",
        image_reference("curlimages/curl:8.12.1"),
        DEFAULT_NODE_TRUST_IMAGE,
        "With nodeTrust cluster: the DaemonSet's image, pinned by digest (needs sh, chroot and curl).",
        doc_default="`curlimages/curl:8.12.1@sha256:94e9e444…44e6`",
        doc=(
            "with `nodeTrust: cluster`: the DaemonSet's image, which runs as root on every node; it "
            "needs `sh`, `chroot` and `curl` (Alpine's busybox and curl). The default names its "
            "digest, so nobody who can push the `8.12.1` tag again can change what runs; an image of "
            "yours should too (`<image>@sha256:<digest>`; a tag alone is accepted with a warning at "
            "every run). Pulled with `imagePullSecret` when that is set. Refused with `nodeTrust: "
            "ssh`"
        ),
    )
    nodes: tuple[Node, ...] = setting(
        "nodes",
        node_list,
        (),
        "Nodes to trust the registry: {name, host, port?, user?, runtime?, hostKey?}.",
        doc_type="list of objects",
        doc=(
            "`{name, host, port?, user?, runtime?, hostKey?}` per node; `hostKey` pins the node's SSH"
            " host key (`ssh-keyscan -t ed25519 <host>` prints it after the host name; without it the"
            " host key is not checked); `runtime` is `auto` (default), `docker`, `containerd`, `crio`"
            " or `k3s`. One entry per machine: `Node-1` and `node-1`, or two spellings of one IPv6 "
            "address, are refused"
        ),
    )
    ssh_user: str = setting(
        "sshUser",
        matches(r"[^\s:]+", "must be a user name without ':' or whitespace"),
        "root",
        "Default SSH user for nodes; a non-root user needs passwordless sudo.",
        doc="SSH user for nodes without `user`; non-root users go through `sudo -n`",
    )
    ssh_private_key: pulumi.Output[str] | None = setting(
        "sshPrivateKey",
        text,
        None,
        "SSH key for the nodes.",
        secret=True,
        doc="SSH key for the nodes; required when `nodes` is not empty, unless `sshAgent` is true",
    )
    ssh_key_passphrase: pulumi.Output[str] | None = setting(
        "sshKeyPassphrase",
        text,
        None,
        "The passphrase of sshPrivateKey.",
        secret=True,
        doc=("the key's passphrase, when it has one (`pulumi config set --secret registry:sshKeyPassphrase`)"),
    )
    ssh_agent: bool = setting(
        "sshAgent",
        boolean,
        False,
        "Use the keys of the ssh-agent at SSH_AUTH_SOCK.",
        doc=("use the keys of the ssh-agent at `SSH_AUTH_SOCK` (where `pulumi` runs) instead of `sshPrivateKey`"),
    )
    ssh_bastion: Bastion | None = setting(
        "sshBastion",
        _object("{host, port?, user?, hostKey?}", BASTION_FIELDS),
        None,
        "A jump host for every node connection.",
        doc_type="object",
        doc=(
            "`{host, port?, user?, hostKey?}`: a jump host every node connection goes through, with "
            "the same key or agent"
        ),
    )
