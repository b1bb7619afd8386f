"""Rules that tie config keys together: replicas need s3, collection needs a volume, the TLS
sources, SSH credentials, the storage node's folder.

Each rule reads the keys' values as checked (`Parsed`: a key that failed holds its
default, so that every problem shows at once) and returns what it found wrong and
the settings it decides (`Outcome`). No rule sees another's outcome, and each decides
settings of its own, so they run in any order; registry/config/load.py joins them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..brought_certificate import problems as certificate_problems
from ..names import node_trust_namespace
from .checks import S3_FIELDS, S3_SHAPE, is_pinned
from .model import (
    DEFAULT_GC_SCHEDULE,
    DEFAULT_IMAGE,
    DEFAULT_NODE_TRUST_IMAGE,
    DEFAULT_STORAGE_PATH,
    Settings,
    distribution_major,
)
from .types import S3, Bastion, Node, TrustMode
from .validators import Problems, failed, json_object

# Where a storage path may lie: below one of these, never a system folder
# (an allowlist, since the folder is handed to uid 1000 and a denylist never
# ends: /etc/kubernetes/manifests, /usr/local/bin, /root/.ssh, /boot/efi...).
STORAGE_PREFIXES = ("/var/lib/", "/srv/", "/data/", "/mnt/")
# Below /var/lib/, the folders of the node's own software, which root acts on: the
# node program's state (registry/node/common.sh), the kubelet's, the runtimes', etcd's,
# the package managers'. A storage path is refused in any of them.
NODE_STATE_FOLDERS = tuple(
    f"/var/lib/{name}"
    for name in [
        "registry-node-trust",
        "kubelet",
        "containerd",
        "docker",
        "containers",
        "crio",
        "etcd",
        "rancher",
        "k0s",
        "cni",
        "calico",
        "cilium",
        "dpkg",
        "apt",
        "rpm",
        "dnf",
        "yum",
        "systemd",
        "cloud",
        "sudo",
        "polkit-1",
    ]
)
_PATH = re.compile(r"(/[A-Za-z0-9._+-]+)+")
_NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True)
class Parsed:
    """The keys' values as checked, by the settings' attribute names; read-only."""

    values: Mapping[str, Any]
    plain: Callable[[str], str | None]  # a key's raw text, secrets too; None when unset or ""
    environ: Mapping[str, str]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class Outcome:
    problems: Problems = field(default_factory=list)
    # Settings this rule decides, by attribute name.
    changes: dict[str, Any] = field(default_factory=dict)


def node_from_entry(entry: dict, ssh_user: str) -> Node:
    return Node(
        entry["name"], entry["host"], entry["port"], entry["user"] or ssh_user, entry["runtime"], entry["hostKey"]
    )


def cluster_ip_in_range(c: Parsed) -> Outcome:
    out = Outcome()
    if c.cluster_ip is None:
        return out
    raw, net = c.plain("clusterIp"), ipaddress.ip_network(c.service_cidr)
    address = ipaddress.ip_address(c.cluster_ip)
    if address.version != net.version or address not in net:
        out.problems.append(f"registry:clusterIp {raw} is outside registry:serviceCidr {net}")
    elif address in (net.network_address, net.broadcast_address):
        out.problems.append(
            f"registry:clusterIp {raw} is the network or broadcast address of registry:serviceCidr {net}"
        )
    elif address == net.network_address + 1:
        out.problems.append(
            f"registry:clusterIp {raw} is the first address of registry:serviceCidr {net}, which the API server's "
            "own Service (kubernetes.default) takes; choose another free address in the range"
        )
    return out


def nodes_and_bastion(c: Parsed) -> Outcome:
    """The entries as Node and Bastion, with registry:sshUser where they name no user."""
    changes: dict[str, Any] = {"nodes": tuple(node_from_entry(e, c.ssh_user) for e in c.nodes)}
    if c.ssh_bastion is not None:
        b = c.ssh_bastion
        changes["ssh_bastion"] = Bastion(b["host"], b["port"], b["user"] or c.ssh_user, b["hostKey"])
    return Outcome(changes=changes)


def replicas_need_s3(c: Parsed) -> Outcome:
    if c.replicas > 1 and c.storage != "s3":
        return Outcome(
            [
                f"registry:replicas {c.replicas} needs registry:storage s3: storage {c.storage} is one "
                + ("ReadWriteOnce volume" if c.storage == "pvc" else "folder on one node")
                + ", which only one pod can use"
            ]
        )
    return Outcome()


def node_storage(c: Parsed) -> Outcome:
    """storageNode, storagePath and keepData: set only with storage node."""
    out = Outcome(changes={"storage_node": None, "storage_path": None, "keep_data": False})
    raw_node, raw_path = c.storage_node, c.storage_path
    if c.storage != "node":
        for key, given in (("storageNode", raw_node), ("storagePath", raw_path)):
            if given is not None:
                out.problems.append(
                    f"registry:{key} is set, but registry:storage is {c.storage}; set registry:storage node to use it"
                )
        if c.keep_data:
            out.problems.append(
                "registry:keepData true needs registry:storage node: with "
                + c.storage
                + " the data is "
                + (
                    "the claim, which destroy deletes with the namespace; back it up first"
                    if c.storage == "pvc"
                    else "in your bucket, which destroy never touches"
                )
            )
        return out
    names = [e["name"] for e in c.nodes]
    entry = next((e for e in c.nodes if e["name"] == raw_node), None)
    node = node_from_entry(entry, c.ssh_user) if entry else None
    if node is None and raw_node is not None and c.node_trust == TrustMode.CLUSTER:
        # The DaemonSet reaches every node: any node of the cluster can keep the data.
        if _NODE_NAME.fullmatch(raw_node):
            node = Node(raw_node, raw_node, 22, c.ssh_user, "auto")
        else:
            out.problems.append(
                f"registry:storageNode {raw_node!r} must be the name of a node of the cluster "
                "(kubectl get nodes), a lower-case DNS name"
            )
            raw_node = ""
    if raw_node is None or (node is None and raw_node != ""):
        out.problems.append(
            f"registry:storageNode {repr(raw_node) if raw_node else '(unset)'} must name the node entry "
            "(registry:nodes[].name, and the node's Kubernetes name) that keeps the data; "
            f"entries: {names or 'none'}"
        )
    path = raw_path or DEFAULT_STORAGE_PATH
    out.problems += _storage_path_problems(path)
    out.changes = {
        "storage_node": node,
        "storage_path": path,
        "keep_data": True if c.keep_data is None else c.keep_data,
    }
    return out


def _storage_path_problems(path: str) -> Problems:
    if (
        not _PATH.fullmatch(path)
        or "/../" in path + "/"
        or "/./" in path + "/"
        or not any(path.startswith(prefix) for prefix in STORAGE_PREFIXES)
    ):
        return [
            f"registry:storagePath {path!r} must be an absolute folder of its own such as /var/lib/registry-data "
            f"(letters, digits, . _ + -; not a system folder: below {', '.join(STORAGE_PREFIXES)})"
        ]
    taken = next((folder for folder in NODE_STATE_FOLDERS if f"{path}/".startswith(f"{folder}/")), None)
    if taken:
        return [
            f"registry:storagePath {path!r} is inside {taken}, a "
            "folder of the node's own software that root acts on; the folder is handed to the registry's user "
            "(uid 1000), who could then change what root runs. Choose a folder of its own, such as "
            "/var/lib/registry-data"
        ]
    return []


def s3_storage(c: Parsed) -> Outcome:
    """The bucket, as S3, with storage s3 only; its secret key only where it is used."""
    out = Outcome(changes={"s3": None, "s3_secret_access_key": None})
    raw, key_id = c.s3, c.s3_access_key_id
    has_secret_key = c.s3_secret_access_key is not None
    if c.storage != "s3":
        for given, name in ((raw, "s3"), (key_id, "s3AccessKeyId"), (has_secret_key or None, "s3SecretAccessKey")):
            if given is not None:
                out.problems.append(
                    f"registry:{name} is set, but registry:storage is {c.storage}; set registry:storage s3 to use it"
                )
        return out
    if raw is None:
        out.problems.append(
            "registry:s3 (unset) is required with registry:storage s3: "
            "an object with at least a bucket, such as {bucket: registry}"
        )
        return out
    value = json_object(S3_SHAPE)(raw, "s3", out.problems)
    if failed(value):
        return out
    fields = S3_FIELDS(value, "s3", out.problems)
    if (key_id is None) != (not has_secret_key):
        given, missing = ("s3AccessKeyId", "s3SecretAccessKey") if key_id else ("s3SecretAccessKey", "s3AccessKeyId")
        out.problems.append(
            f"registry:{given} is set without registry:{missing}; give both, or neither to use the pod's own identity"
        )
        return out
    if not failed(fields):
        path_style = fields["endpoint"] is not None if fields["forcePathStyle"] is None else fields["forcePathStyle"]
        out.changes["s3"] = S3(
            bucket=fields["bucket"],
            region=fields["region"],
            endpoint=fields["endpoint"],
            force_path_style=path_style,
            root_directory=fields["rootDirectory"],
            redirect=fields["redirect"],
            access_key_id=key_id,
        )
        out.changes["s3_secret_access_key"] = c.s3_secret_access_key
    return out


def collection_needs_a_volume_and_distribution_3(c: Parsed) -> Outcome:
    # Collection switches the registry to read-only through a flag on its
    # volume (registry/maintenance.py); replicas on a bucket share no volume.
    # Pulumi.yaml's default reaches the program on s3 stacks too (the CLI
    # requires a default for a declared key, and it cannot depend on storage),
    # so the default means "none" there; any other schedule is refused.
    out = Outcome()
    schedule = c.gc_schedule
    if schedule == DEFAULT_GC_SCHEDULE and c.storage == "s3":
        schedule = out.changes["gc_schedule"] = None
    if schedule and c.storage == "s3":
        out.problems.append(
            f"registry:gcSchedule {schedule!r} needs registry:storage pvc: with s3 the replicas share no volume "
            'to switch to read-only together; set registry:gcSchedule "" and collect as the README says'
        )
    if schedule and distribution_major(c.image) == 2:
        out.problems.append(
            f"registry:gcSchedule {schedule!r} needs distribution 3, and registry:image {c.image} is distribution 2, "
            "whose garbage-collect --delete-untagged deletes the platform images and attestations of every multi-arch "
            f'and buildx image (distribution#3178); use registry:image {DEFAULT_IMAGE}, or set registry:gcSchedule ""'
        )
    return out


def one_certificate_source(c: Parsed) -> Outcome:
    out = Outcome()
    certificate, ca, secret, key = c.tls_certificate, c.tls_ca, c.tls_secret, c.plain("tlsKey")
    if secret is not None and (certificate is not None or key is not None):
        out.problems.append(
            "registry:tlsSecret and registry:tlsCertificate/tlsKey are both set; the certificate comes "
            "from one of them: the Secret, or the config"
        )
    elif certificate is None and secret is None and (ca is not None or key is not None):
        out.problems.append(
            "registry:tlsKey or registry:tlsCa is set without registry:tlsCertificate; give all three, or none"
        )
    elif certificate is not None:
        out.problems += certificate_problems(certificate, key, ca, c.hostname)
    if (certificate is not None or secret is not None) and c.ca_generation != 1:
        out.problems.append(
            "registry:caGeneration is set, but the certificate is the user's, with its own CA; rotate by "
            "giving the new CA in registry:tlsCa next to the old one, then the new certificate"
        )
    if certificate is None:
        out.changes["tls_key"] = None
        if secret is None:
            out.changes["tls_ca"] = None
    return out


def ssh_credentials(c: Parsed) -> Outcome:
    out = Outcome()
    if c.ssh_agent and not c.environ.get("SSH_AUTH_SOCK"):
        out.problems.append(
            "registry:sshAgent is true, but SSH_AUTH_SOCK is not set where pulumi runs; "
            "start an agent and add the key (eval $(ssh-agent); ssh-add), or give registry:sshPrivateKey"
        )
    if c.node_trust == TrustMode.CLUSTER:
        return out
    if c.nodes and c.ssh_private_key is None and not c.ssh_agent:
        out.problems.append(
            f"registry:sshPrivateKey is not set, but registry:nodes lists {len(c.nodes)} node(s); "
            "set it with `pulumi config set --secret registry:sshPrivateKey < key`, or set registry:sshAgent true "
            "to use the keys of your ssh-agent"
        )
    if c.plain("sshKeyPassphrase") and c.ssh_private_key is None:
        out.problems.append("registry:sshKeyPassphrase is set without registry:sshPrivateKey; give the key too")
    return out


def node_trust(c: Parsed) -> Outcome:
    """nodeTrust cluster needs no SSH, and refuses what only SSH would use; ssh has no DaemonSet image."""
    out = Outcome()
    if c.node_trust == TrustMode.SSH:
        if c.node_trust_image != DEFAULT_NODE_TRUST_IMAGE:
            out.problems.append(
                f"registry:nodeTrustImage {c.node_trust_image!r} is set, but registry:nodeTrust is ssh; "
                "set registry:nodeTrust cluster to run the DaemonSet, or remove it"
            )
        return out
    given = {
        "sshPrivateKey": c.plain("sshPrivateKey"),
        "sshKeyPassphrase": c.plain("sshKeyPassphrase"),
        "sshAgent": c.ssh_agent or None,
        "sshBastion": c.ssh_bastion,
    }
    for key, value in given.items():
        if value is not None:
            out.problems.append(
                f"registry:{key} is set, but registry:nodeTrust is cluster, which reaches the nodes without SSH; "
                f"remove it (pulumi config rm registry:{key}), or set registry:nodeTrust ssh"
            )
    limit = 63 - len(node_trust_namespace(""))
    if len(c.namespace) > limit:
        out.problems.append(
            f"registry:namespace {c.namespace!r} is {len(c.namespace)} characters; with registry:nodeTrust "
            f"cluster it must be at most {limit}, as the DaemonSet's namespace {node_trust_namespace('<namespace>')!r} "
            "must fit in 63"
        )
    return out


def pushers_and_pullers_apart(c: Parsed) -> Outcome:
    """One htpasswd line per name: a name in two of users, pullers and pullSecretUser
    would be a pusher and a puller at once."""
    problems = [
        f"registry:pullers lists {name!r}, which registry:users lists too; a user either pushes (users) or only "
        "pulls (pullers): remove it from one of them"
        for name in c.pullers
        if name in c.users
    ]
    for key, names in (("users", c.users), ("pullers", c.pullers)):
        if c.pull_secret_user in names:
            problems.append(
                f"registry:pullSecretUser is {c.pull_secret_user!r}, which registry:{key} lists too; the pull "
                "secrets' user is a pull-only user of its own, whose password the program makes: choose another "
                "name (the default is cluster-puller)"
            )
    return Outcome(problems)


def blank_secrets_are_unset(c: Parsed) -> Outcome:
    return Outcome(
        changes={key: None for key in ("image_pull_secret", "ssh_key_passphrase") if not c.plain(_camel(key))}
    )


def _camel(attribute: str) -> str:
    first, *rest = attribute.split("_")
    return first + "".join(part.title() for part in rest)


RULES: tuple[Callable[[Parsed], Outcome], ...] = (
    cluster_ip_in_range,
    nodes_and_bastion,
    replicas_need_s3,
    node_storage,
    s3_storage,
    collection_needs_a_volume_and_distribution_3,
    one_certificate_source,
    ssh_credentials,
    node_trust,
    pushers_and_pullers_apart,
    blank_secrets_are_unset,
)


def warnings(settings: Settings) -> list[str]:
    """What the program says at every run about settings it accepts but would not choose."""
    found = []
    if settings.node_trust == TrustMode.SSH and not settings.nodes:
        found.append(
            "registry:nodeTrust is ssh and registry:nodes lists no node, so no node will trust the registry or "
            "resolve its name (pods cannot pull from it); set registry:nodeTrust cluster for a DaemonSet on every "
            "node, or list the nodes (README.md, Over SSH instead)"
        )
    if settings.node_trust == TrustMode.CLUSTER and not is_pinned(settings.node_trust_image):
        found.append(
            f"registry:nodeTrustImage {settings.node_trust_image} is a tag, not a digest: whoever can push that tag "
            "(or runs a mirror your nodes use) runs as root on every node at the next pod start; pin it as "
            "<image>@sha256:<digest> (docker buildx imagetools inspect <image> prints the digest)"
        )
    return found
