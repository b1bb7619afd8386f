"""Read and validate the stack's config once, before any resource exists.

Every key is one row of `TABLE`: its check, its default, whether it is secret,
and what it is for. Rules that tie keys together (replicas need s3, collection
needs a volume, the TLS sources, SSH credentials) are the small functions of
`RULES`; they run even when a key failed, on its default, so every problem is
reported at once. Adding a key is a row here and a field of `Settings`.

Every other module takes a `Settings`; nothing else calls `pulumi.Config`.
A bad value stops the program with one message that names the key, the value
and what would be accepted (pulumi.RunError prints it without a traceback).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from .config_checks import (
    BASTION_FIELDS,
    S3_FIELDS,
    S3_SHAPE,
    affinity_shape,
    cron,
    docker_config,
    image_reference,
    is_pinned,
    label_map,
    namespace_name,
    node_list,
    own_namespace,
    quantity,
    registry_hostname,
    resource_amounts,
    secret_reference,
    storage_class,
    toleration,
    user,
    whole,
)
from .names import node_trust_namespace, service_dns_names
from .validators import (
    Check,
    Problems,
    all_of,
    boolean,
    failed,
    integer,
    ip_address,
    is_ip,
    json_list,
    json_object,
    matches,
    network,
    one_of,
    text,
)

CONFIG_NAMESPACE = "registry"

# The registry image is pinned to a patch release: a floating tag would let a
# pod restart change the registry under the user's feet. Distribution 3, since
# 2.8's `garbage-collect --delete-untagged` deletes the platform images and
# attestations of every tagged multi-arch or buildx index (distribution#3178,
# #3004; tests/e2e/test_gc.py). 3.1.1 is the newest 3.x that Docker Hub's official
# image carries (docker-library/official-images#21360); the tests build the
# same version from the Go module proxy (tests/build_registry.sh).
DEFAULT_IMAGE = "registry:3.1.1"
# nodeTrust: cluster: the DaemonSet's image needs sh, chroot and curl, which
# this one has (Alpine's busybox and curl), nothing else. It runs as root on
# every node, so it is pinned by digest: whoever could push the tag again
# would otherwise run their code there at the next pod start. The digest is
# the tag's multi-arch index, as public projects that pull it anonymously
# record it (Docker Hub is out of this project's machines' reach).
DEFAULT_NODE_TRUST_IMAGE = (
    "curlimages/curl:8.12.1@sha256:94e9e444bcba979c2ea12e27ae39bee4cd10bc7041a472c4727a558e213744e6"
)
NODE_TRUST_MODES = ("ssh", "cluster")


def distribution_major(image: str) -> int | None:
    """The registry's major version as the image's tag says it (registry:2.8.3 -> 2),
    or None when the tag does not say (a digest, latest, a tag of the user's)."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    tag = name.split(":", 1)[1] if ":" in name else ""
    found = re.match(r"^v?(\d+)(?:[.-]|$)", tag)
    return int(found.group(1)) if found else None


STORAGES = ("pvc", "s3", "node")
DEFAULT_STORAGE_PATH = "/var/lib/registry-data"
# Where a storage path may lie: below one of these, never a system folder
# (an allowlist, since the folder is handed to uid 1000 and a denylist never
# ends: /etc/kubernetes/manifests, /usr/local/bin, /root/.ssh, /boot/efi...).
STORAGE_PREFIXES = ("/var/lib/", "/srv/", "/data/", "/mnt/")
# Below /var/lib/, the folders of the node's own software, which root acts on: the
# node program's state (registry/node/common.sh), the kubelet's, the runtimes', etcd's,
# the package managers'. A storage path is refused in, above or below any of them.
NODE_STATE_FOLDERS = tuple(
    f"/var/lib/{name}"
    for name in (
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
    )
)
_PATH = re.compile(r"(/[A-Za-z0-9._+-]+)+")
MAX_REPLICAS = 20
_NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# The registry container's resources unless `resources` says otherwise.
DEFAULT_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
MAX_CA_GENERATION = 1000
DEFAULT_GC_SCHEDULE = "0 3 * * 0"


class SettingsError(pulumi.RunError):
    """Raised with every problem found in the config, one line each."""


@dataclass(frozen=True)
class Node:
    name: str
    host: str
    port: int
    user: str
    runtime: str
    # The node's SSH host key (OpenSSH public key line); None: not checked.
    host_key: str | None = None

    @property
    def is_ip(self) -> bool:
        return is_ip(self.host)


@dataclass(frozen=True)
class Bastion:
    """A jump host the node connections go through (registry:sshBastion)."""

    host: str
    port: int
    user: str
    host_key: str | None = None


@dataclass(frozen=True)
class S3:
    """Object storage for the registry's data (the registry's s3 storage driver)."""

    bucket: str
    region: str
    endpoint: str | None
    force_path_style: bool
    root_directory: str | None
    redirect: bool
    # With it, the secret key is in Settings.s3_secret_access_key; without
    # both, the pod's own cloud identity is used.
    access_key_id: str | None


@dataclass(frozen=True)
class KubeAccess:
    """How pulumi-kubernetes reaches the cluster (its own `kubernetes:` config), for
    registry/preflight.py to read the same cluster."""

    # A path, or the kubeconfig's text (it may hold credentials: never printed).
    kubeconfig: str | None = field(default=None, repr=False)
    context: str | None = None
    # kubernetes:cluster: the kubeconfig cluster to use instead of the context's.
    cluster: str | None = None


@dataclass(frozen=True)
class Settings:
    hostname: str
    namespace: str
    port: int
    service_cidr: str
    cluster_ip: str | None
    node_port: int
    image: str
    storage_size: str
    storage_class: str | None
    users: tuple[str, ...]
    pull_secret_namespaces: tuple[str, ...]
    cert_validity_days: int
    nodes: tuple[Node, ...]
    ssh_user: str
    storage: str
    replicas: int
    s3: S3 | None
    # storage node: the node entry whose folder holds the data, and the folder.
    storage_node: Node | None = None
    storage_path: str | None = None
    # Whether destroy leaves the image data (storage node's folder) in place.
    keep_data: bool = False
    # ssh: over SSH to each node of `nodes`; cluster: a DaemonSet on every node.
    node_trust: str = "ssh"
    node_trust_image: str = DEFAULT_NODE_TRUST_IMAGE
    ca_generation: int = 1
    # Cron schedule of garbage collection; None: no collection.
    gc_schedule: str | None = None
    metrics: bool = True
    discovery: bool = True
    # Scheduling, as the pod gets them.
    resources: dict = field(default_factory=lambda: copy.deepcopy(DEFAULT_RESOURCES))
    node_selector: dict = field(default_factory=dict)
    tolerations: tuple = ()
    affinity: dict | None = None
    # Secrets: kept out of every repr and component input.
    ssh_private_key: pulumi.Output[str] | None = None
    s3_secret_access_key: pulumi.Output[str] | None = None
    # With storage s3, also in S3.access_key_id.
    s3_access_key_id: str | None = None
    # A .dockerconfigjson document for pulling the registry's own image.
    image_pull_secret: pulumi.Output[str] | None = None
    # SSH as operators have it: the key's passphrase, an ssh-agent, a bastion.
    ssh_key_passphrase: pulumi.Output[str] | None = None
    ssh_agent: bool = False
    ssh_bastion: Bastion | None = None
    # Add the pull secret to each listed namespace's default ServiceAccount.
    service_account_pull_secret: bool = False
    # A server certificate the user brings, its key (secret) and the CA nodes trust for it.
    tls_certificate: str | None = None
    tls_key: pulumi.Output[str] | None = None
    tls_ca: str | None = None
    # Or a kubernetes.io/tls Secret the user keeps in the cluster (cert-manager's,
    # say), as (namespace, name): read and checked by registry/preflight.py.
    tls_secret: tuple[str, str] | None = None
    # Whether the program reads the cluster before it creates anything (registry/preflight.py).
    cluster_check: bool = True
    kube: KubeAccess = KubeAccess()
    # nodeTrust cluster without `nodes`: the cluster's nodes' addresses (registry/preflight.py).
    cluster_node_hosts: tuple[str, ...] = ()

    @property
    def endpoint(self) -> str:
        return f"{self.hostname}:{self.port}"

    @property
    def cluster_dns_endpoints(self) -> list[str]:
        """The Service's cluster DNS names, as in-cluster builders dial them."""
        return [f"{name}:{self.port}" for name in service_dns_names(self.namespace)]

    @property
    def external_hosts(self) -> list[str]:
        """Where a workstation reaches the node port: the `nodes` entries, else the cluster's nodes."""
        return [node.host for node in self.nodes] or list(self.cluster_node_hosts)

    @property
    def external_endpoints(self) -> list[str]:
        return [f"{url_host(host)}:{self.node_port}" for host in self.external_hosts]

    def __repr__(self) -> str:  # never print the key, even by accident
        return f"Settings(hostname={self.hostname!r}, namespace={self.namespace!r}, nodes={len(self.nodes)})"


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# ---- the table ---------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    name: str
    check: Check
    default: Any
    description: str
    secret: bool = False
    # False: "" is a value of its own (gcSchedule "" turns collection off), not "unset".
    blank_is_unset: bool = True

    @property
    def attribute(self) -> str:
        """The Settings field: serviceCidr -> service_cidr."""
        return re.sub(r"([A-Z])", r"_\1", self.name).lower()


def _object(shape: str, check: Check) -> Check:
    return all_of(json_object(shape), check)


TABLE: tuple[Key, ...] = (
    Key(
        "hostname",
        registry_hostname,
        "image-registry",
        "Name nodes and pods use in image references (a lower-case DNS name).",
    ),
    Key("namespace", own_namespace, "registry", "Namespace of the registry workload."),
    Key("port", integer(1, 65535), 5000, "Service port; part of every image reference (hostname:port/...)."),
    Key("serviceCidr", network, "10.96.0.0/12", "The cluster's Service CIDR; clusterIp must be inside it."),
    Key("clusterIp", ip_address, None, "Fixed ClusterIP of the Service (else allocated)."),
    Key(
        "nodePort",
        integer(30000, 32767),
        30500,
        "Port on every node for access from outside the cluster (30000-32767).",
    ),
    Key(
        "image",
        image_reference(DEFAULT_IMAGE),
        DEFAULT_IMAGE,
        "Registry image, pinned.",
    ),
    Key("storageSize", quantity, "10Gi", "Size of the registry's PersistentVolumeClaim."),
    Key("storageClass", storage_class, None, "StorageClass of the claim (else the cluster's default)."),
    Key(
        "users",
        json_list(user, unique="is listed twice; each user must be unique", non_empty="must list at least one user"),
        ("admin",),
        "htpasswd users; the first one is the username output.",
    ),
    Key(
        "pullSecretNamespaces",
        json_list(namespace_name, unique="is listed twice"),
        ("default",),
        "Namespaces that get the dockerconfigjson pull secret.",
    ),
    Key(
        "certValidityDays",
        integer(1, 825),
        365,
        "Validity of the server certificate in days (1-825); it renews before expiry.",
    ),
    Key(
        "sshUser",
        matches(r"[^\s:]+", "must be a user name without ':' or whitespace"),
        "root",
        "Default SSH user for nodes; a non-root user needs passwordless sudo.",
    ),
    Key("nodes", node_list, (), "Nodes to trust the registry: {name, host, port?, user?, runtime?, hostKey?}."),
    Key(
        "nodeTrust",
        one_of(*NODE_TRUST_MODES),
        "ssh",
        "How nodes come to trust the registry: ssh (each of nodes) or cluster (a DaemonSet, every node, no SSH).",
    ),
    Key(
        "nodeTrustImage",
        image_reference("curlimages/curl:8.12.1"),
        DEFAULT_NODE_TRUST_IMAGE,
        "With nodeTrust cluster: the DaemonSet's image, pinned by digest (needs sh, chroot and curl).",
    ),
    Key(
        "storage",
        one_of(*STORAGES),
        "pvc",
        "Where the registry keeps images, pvc (one volume), node (a folder on one node) or s3 (object storage).",
    ),
    Key("replicas", integer(1, MAX_REPLICAS), 1, "Pods serving the registry; more than 1 needs storage s3."),
    Key("s3", text, None, f"With storage s3: {S3_SHAPE}."),
    Key("s3AccessKeyId", text, None, "Access key of the bucket; with s3SecretAccessKey, or neither."),
    Key("s3SecretAccessKey", text, None, "Secret key of the bucket.", secret=True),
    Key("storageNode", text, None, "With storage node: the nodes entry whose folder keeps the data."),
    Key("storagePath", text, None, f"With storage node: the folder (default {DEFAULT_STORAGE_PATH})."),
    Key("keepData", boolean, None, "With storage node: whether destroy leaves the folder (default true)."),
    Key(
        "caGeneration",
        integer(1, MAX_CA_GENERATION),
        1,
        "Raise by one to rotate the CA; nodes trust the new and the previous one.",
    ),
    Key(
        "gcSchedule",
        cron,
        DEFAULT_GC_SCHEDULE,
        'Cron schedule of garbage collection (storage pvc; none with s3); "" turns it off.',
        blank_is_unset=False,
    ),
    Key("metrics", boolean, True, "Prometheus metrics on their own port, not on the node port."),
    Key(
        "discovery",
        boolean,
        True,
        "Publish kube-public/local-registry-hosting (KEP-1755); one registry per cluster can.",
    ),
    Key(
        "resources",
        _object("{requests?: {cpu?, memory?}, limits?: {cpu?, memory?}}", whole(resource_amounts)),
        DEFAULT_RESOURCES,
        "The container's requests and limits.",
    ),
    Key("nodeSelector", _object("of node label to value", whole(label_map)), {}, "Node labels the pod must match."),
    Key("tolerations", whole(json_list(toleration)), (), "Taints the pod tolerates."),
    Key(
        "affinity",
        _object("{nodeAffinity?, podAffinity?, podAntiAffinity?}", affinity_shape),
        None,
        "Affinity as in a pod spec.",
    ),
    Key(
        "imagePullSecret", docker_config, None, "A .dockerconfigjson for pulling the registry's own image.", secret=True
    ),
    Key(
        "serviceAccountPullSecret",
        boolean,
        False,
        "Name the pull secret in each listed namespace's default ServiceAccount.",
    ),
    Key("tlsCertificate", text, None, "A server certificate you bring (PEM)."),
    Key("tlsKey", text, None, "Its private key (PEM).", secret=True),
    Key("tlsCa", text, None, "The CA certificate(s) nodes trust for it."),
    Key("tlsSecret", secret_reference, None, "<namespace>/<name> of a kubernetes.io/tls Secret to serve instead."),
    Key(
        "clusterCheck",
        boolean,
        True,
        "Read the cluster before anything is created; false where it cannot be read as pulumi-kubernetes reads it.",
    ),
    Key("sshAgent", boolean, False, "Use the keys of the ssh-agent at SSH_AUTH_SOCK."),
    Key(
        "sshBastion",
        _object("{host, port?, user?, hostKey?}", BASTION_FIELDS),
        None,
        "A jump host for every node connection.",
    ),
    Key("sshPrivateKey", text, None, "SSH key for the nodes.", secret=True),
    Key("sshKeyPassphrase", text, None, "The passphrase of sshPrivateKey.", secret=True),
)
KEYS = frozenset(key.name for key in TABLE)
SECRET_KEYS = tuple(key.name for key in TABLE if key.secret)


# ---- rules over several keys ---------------------------------------------------------


@dataclass
class Parsed:
    """The keys' values as checked (a failed key holds its default), and what the rules need besides."""

    values: dict[str, Any]
    plain: Callable[[str], str | None]  # a key's raw text, secrets too; None when unset or ""
    problems: Problems
    environ: Mapping[str, str]

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value

    def problem(self, text: str) -> None:
        self.problems.append(text)


def cluster_ip_in_range(c: Parsed) -> None:
    if c["clusterIp"] is None:
        return
    raw, net = c.plain("clusterIp"), ipaddress.ip_network(c["serviceCidr"])
    address = ipaddress.ip_address(c["clusterIp"])
    if address.version != net.version or address not in net:
        c.problem(f"registry:clusterIp {raw} is outside registry:serviceCidr {net}")
    elif address in (net.network_address, net.broadcast_address):
        c.problem(f"registry:clusterIp {raw} is the network or broadcast address of registry:serviceCidr {net}")
    elif address == net.network_address + 1:
        c.problem(
            f"registry:clusterIp {raw} is the first address of registry:serviceCidr {net}, which the API server's "
            "own Service (kubernetes.default) takes; choose another free address in the range"
        )
    else:
        return
    c["clusterIp"] = None


def nodes_and_bastion(c: Parsed) -> None:
    """The entries as Node and Bastion, with registry:sshUser where they name no user."""
    user = c["sshUser"]
    c["nodes"] = tuple(
        Node(e["name"], e["host"], e["port"], e["user"] or user, e["runtime"], e["hostKey"]) for e in c["nodes"]
    )
    if c["sshBastion"] is not None:
        b = c["sshBastion"]
        c["sshBastion"] = Bastion(b["host"], b["port"], b["user"] or user, b["hostKey"])


def replicas_need_s3(c: Parsed) -> None:
    if c["replicas"] > 1 and c["storage"] != "s3":
        c.problem(
            f"registry:replicas {c['replicas']} needs registry:storage s3: storage {c['storage']} is one "
            + ("ReadWriteOnce volume" if c["storage"] == "pvc" else "folder on one node")
            + ", which only one pod can use"
        )


def node_storage(c: Parsed) -> None:
    """storageNode, storagePath and keepData: set only with storage node."""
    storage, raw_node, raw_path = c["storage"], c["storageNode"], c["storagePath"]
    if storage != "node":
        for key, given in (("storageNode", raw_node), ("storagePath", raw_path)):
            if given is not None:
                c.problem(
                    f"registry:{key} is set, but registry:storage is {storage}; set registry:storage node to use it"
                )
        if c["keepData"]:
            c.problem(
                "registry:keepData true needs registry:storage node: with "
                + storage
                + " the data is "
                + (
                    "the claim, which destroy deletes with the namespace; back it up first"
                    if storage == "pvc"
                    else "in your bucket, which destroy never touches"
                )
            )
        c["storageNode"], c["storagePath"], c["keepData"] = None, None, False
        return
    names = [node.name for node in c["nodes"]]
    node = next((n for n in c["nodes"] if n.name == raw_node), None)
    if node is None and raw_node is not None and c["nodeTrust"] == "cluster":
        # The DaemonSet reaches every node: any node of the cluster can keep the data.
        if _NODE_NAME.fullmatch(raw_node):
            node = Node(raw_node, raw_node, 22, c["sshUser"], "auto")
        else:
            c.problem(
                f"registry:storageNode {raw_node!r} must be the name of a node of the cluster "
                "(kubectl get nodes), a lower-case DNS name"
            )
            raw_node = ""
    if raw_node is None or (node is None and raw_node != ""):
        c.problem(
            f"registry:storageNode {repr(raw_node) if raw_node else '(unset)'} must name the node entry "
            "(registry:nodes[].name, and the node's Kubernetes name) that keeps the data; "
            f"entries: {names or 'none'}"
        )
    path = raw_path or DEFAULT_STORAGE_PATH
    if (
        not _PATH.fullmatch(path)
        or "/../" in path + "/"
        or "/./" in path + "/"
        or not any(path.startswith(prefix) for prefix in STORAGE_PREFIXES)
    ):
        c.problem(
            f"registry:storagePath {path!r} must be an absolute folder of its own such as /var/lib/registry-data "
            f"(letters, digits, . _ + -; not a system folder: below {', '.join(STORAGE_PREFIXES)})"
        )
    else:
        taken = next((folder for folder in NODE_STATE_FOLDERS if f"{path}/".startswith(f"{folder}/")), None)
        if taken:
            c.problem(
                f"registry:storagePath {path!r} is inside {taken}, a "
                "folder of the node's own software that root acts on; the folder is handed to the registry's user "
                "(uid 1000), who could then change what root runs. Choose a folder of its own, such as "
                "/var/lib/registry-data"
            )
    c["storageNode"], c["storagePath"] = node, path
    c["keepData"] = True if c["keepData"] is None else c["keepData"]


def s3_storage(c: Parsed) -> None:
    storage, raw, key_id = c["storage"], c["s3"], c["s3AccessKeyId"]
    has_secret_key = c["s3SecretAccessKey"] is not None
    c["s3"] = None
    if storage != "s3":
        for given, name in ((raw, "s3"), (key_id, "s3AccessKeyId"), (has_secret_key or None, "s3SecretAccessKey")):
            if given is not None:
                c.problem(
                    f"registry:{name} is set, but registry:storage is {storage}; set registry:storage s3 to use it"
                )
        return
    if raw is None:
        c.problem(
            "registry:s3 (unset) is required with registry:storage s3: "
            "an object with at least a bucket, such as {bucket: registry}"
        )
        return
    value = json_object(S3_SHAPE)(raw, "s3", c.problems)
    if failed(value):
        return
    fields = S3_FIELDS(value, "s3", c.problems)
    if (key_id is None) != (not has_secret_key):
        given, missing = ("s3AccessKeyId", "s3SecretAccessKey") if key_id else ("s3SecretAccessKey", "s3AccessKeyId")
        c.problem(
            f"registry:{given} is set without registry:{missing}; give both, or neither to use the pod's own identity"
        )
        return
    if not failed(fields):
        path_style = fields["endpoint"] is not None if fields["forcePathStyle"] is None else fields["forcePathStyle"]
        c["s3"] = S3(
            bucket=fields["bucket"],
            region=fields["region"],
            endpoint=fields["endpoint"],
            force_path_style=path_style,
            root_directory=fields["rootDirectory"],
            redirect=fields["redirect"],
            access_key_id=key_id,
        )


def collection_needs_a_volume_and_distribution_3(c: Parsed) -> None:
    # Collection switches the registry to read-only through a flag on its
    # volume (registry/maintenance.py); replicas on a bucket share no volume.
    # Pulumi.yaml's default reaches the program on s3 stacks too (the CLI
    # requires a default for a declared key, and it cannot depend on storage),
    # so the default means "none" there; any other schedule is refused.
    schedule, storage, image = c["gcSchedule"], c["storage"], c["image"]
    if schedule == DEFAULT_GC_SCHEDULE and storage == "s3":
        schedule = c["gcSchedule"] = None
    if schedule and storage == "s3":
        c.problem(
            f"registry:gcSchedule {schedule!r} needs registry:storage pvc: with s3 the replicas share no volume "
            'to switch to read-only together; set registry:gcSchedule "" and collect as the README says'
        )
    if schedule and distribution_major(image) == 2:
        c.problem(
            f"registry:gcSchedule {schedule!r} needs distribution 3, and registry:image {image} is distribution 2, "
            "whose garbage-collect --delete-untagged deletes the platform images and attestations of every multi-arch "
            f'and buildx image (distribution#3178); use registry:image {DEFAULT_IMAGE}, or set registry:gcSchedule ""'
        )


def one_certificate_source(c: Parsed) -> None:
    certificate, ca, secret, key = c["tlsCertificate"], c["tlsCa"], c["tlsSecret"], c.plain("tlsKey")
    if secret is not None and (certificate is not None or key is not None):
        c.problem(
            "registry:tlsSecret and registry:tlsCertificate/tlsKey are both set; the certificate comes "
            "from one of them: the Secret, or the config"
        )
    elif certificate is None and secret is None and (ca is not None or key is not None):
        c.problem("registry:tlsKey or registry:tlsCa is set without registry:tlsCertificate; give all three, or none")
    elif certificate is not None:
        from .brought_certificate import problems as certificate_problems

        c.problems.extend(certificate_problems(certificate, key, ca, c["hostname"]))
    if (certificate is not None or secret is not None) and c["caGeneration"] != 1:
        c.problem(
            "registry:caGeneration is set, but the certificate is the user's, with its own CA; rotate by "
            "giving the new CA in registry:tlsCa next to the old one, then the new certificate"
        )
    if certificate is None:
        c["tlsKey"] = None
        if secret is None:
            c["tlsCa"] = None


def ssh_credentials(c: Parsed) -> None:
    if c["sshAgent"] and not c.environ.get("SSH_AUTH_SOCK"):
        c.problem(
            "registry:sshAgent is true, but SSH_AUTH_SOCK is not set where pulumi runs; "
            "start an agent and add the key (eval $(ssh-agent); ssh-add), or give registry:sshPrivateKey"
        )
    if c["nodeTrust"] == "cluster":
        return
    if c["nodes"] and c["sshPrivateKey"] is None and not c["sshAgent"]:
        c.problem(
            f"registry:sshPrivateKey is not set, but registry:nodes lists {len(c['nodes'])} node(s); "
            "set it with `pulumi config set --secret registry:sshPrivateKey < key`, or set registry:sshAgent true "
            "to use the keys of your ssh-agent"
        )
    if c.plain("sshKeyPassphrase") and c["sshPrivateKey"] is None:
        c.problem("registry:sshKeyPassphrase is set without registry:sshPrivateKey; give the key too")


def node_trust(c: Parsed) -> None:
    """nodeTrust cluster needs no SSH, and refuses what only SSH would use; ssh has no DaemonSet image."""
    if c["nodeTrust"] == "ssh":
        if c["nodeTrustImage"] != DEFAULT_NODE_TRUST_IMAGE:
            c.problem(
                f"registry:nodeTrustImage {c['nodeTrustImage']!r} is set, but registry:nodeTrust is ssh; "
                "set registry:nodeTrust cluster to run the DaemonSet, or remove it"
            )
        return
    given = {
        "sshPrivateKey": c.plain("sshPrivateKey"),
        "sshKeyPassphrase": c.plain("sshKeyPassphrase"),
        "sshAgent": c["sshAgent"] or None,
        "sshBastion": c["sshBastion"],
    }
    for key, value in given.items():
        if value is not None:
            c.problem(
                f"registry:{key} is set, but registry:nodeTrust is cluster, which reaches the nodes without SSH; "
                f"remove it (pulumi config rm registry:{key}), or set registry:nodeTrust ssh"
            )
    limit = 63 - len(node_trust_namespace(""))
    if len(c["namespace"]) > limit:
        c.problem(
            f"registry:namespace {c['namespace']!r} is {len(c['namespace'])} characters; with registry:nodeTrust "
            f"cluster it must be at most {limit}, as the DaemonSet's namespace {node_trust_namespace('<namespace>')!r} "
            "must fit in 63"
        )


def secrets_only_where_used(c: Parsed) -> None:
    if c["s3"] is None:
        c["s3SecretAccessKey"] = None
    for key in ("imagePullSecret", "sshKeyPassphrase"):
        if not c.plain(key):
            c[key] = None


RULES: tuple[Callable[[Parsed], None], ...] = (
    cluster_ip_in_range,
    nodes_and_bastion,
    replicas_need_s3,
    node_storage,
    s3_storage,
    collection_needs_a_volume_and_distribution_3,
    one_certificate_source,
    ssh_credentials,
    node_trust,
    secrets_only_where_used,
)


# ---- advice ---------------------------------------------------------------------------


def warnings(settings: Settings) -> list[str]:
    """What the program says at every run about settings it accepts but would not choose."""
    found = []
    if settings.node_trust == "ssh" and not settings.nodes:
        found.append(
            "registry:nodeTrust is ssh and registry:nodes lists no node, so no node will trust the registry or "
            "resolve its name (pods cannot pull from it); set registry:nodeTrust cluster for a DaemonSet on every "
            "node, or list the nodes (README.md, Over SSH instead)"
        )
    if settings.node_trust == "cluster" and not is_pinned(settings.node_trust_image):
        found.append(
            f"registry:nodeTrustImage {settings.node_trust_image} is a tag, not a digest: whoever can push that tag "
            "(or runs a mirror your nodes use) runs as root on every node at the next pod start; pin it as "
            "<image>@sha256:<digest> (docker buildx imagetools inspect <image> prints the digest)"
        )
    return found


# ---- reading -------------------------------------------------------------------------


def load_settings() -> Settings:
    """Read the `registry:` config of the current stack."""
    config = pulumi.Config(CONFIG_NAMESPACE)
    secrets = {key: config.get_secret(key) for key in SECRET_KEYS}
    settings = parse_settings(config.get, {k: v for k, v in secrets.items() if v is not None}, keys=config_keys())
    provider = pulumi.Config("kubernetes")
    kube = KubeAccess(provider.get("kubeconfig"), provider.get("context"), provider.get("cluster"))
    return dataclasses.replace(settings, kube=kube)


def config_keys() -> set[str] | None:
    """The keys set in the `registry:` namespace, or None when the SDK does not say.

    The SDK has no call that lists config; the language host hands the stack's
    config to the program as this map (pulumi/runtime/config.py), or as
    PULUMI_CONFIG. Should a later SDK move it, the unknown-key check is skipped
    with a warning rather than every `pulumi up` failing.
    """
    try:
        from pulumi.runtime import config as runtime_config

        every = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    except Exception as error:  # an SDK whose internals moved
        pulumi.log.warn(f"cannot list the stack's config ({error!r}); unknown registry: keys are not checked")
        return None
    prefix = CONFIG_NAMESPACE + ":"
    return {key[len(prefix) :].removeprefix("config:") for key in every if key.startswith(prefix)}


def unknown_keys(keys: set[str]) -> Problems:
    by_lower = {k.lower(): k for k in KEYS}
    problems = []
    for key in sorted(keys - KEYS):
        close = difflib.get_close_matches(key.lower(), by_lower, n=1, cutoff=0.6)
        hint = f"did you mean registry:{by_lower[close[0]]}? " if close else ""
        problems.append(f"registry:{key} is not a setting of this program; {hint}settings: {', '.join(sorted(KEYS))}")
    return problems


def parse_settings(
    get: Callable[[str], str | None],
    secrets: Mapping[str, pulumi.Output[str]] | None = None,
    keys: set[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from raw config strings; `get(key)` returns None when unset.

    `secrets` holds the secret keys that are set, as outputs; `get` still gives
    their text to the checks, which never show it. `keys` are the keys the
    stack sets, checked against the table. Defaults repeat those in Pulumi.yaml
    because the CLI alone applies those.
    """
    secrets = secrets or {}
    problems = unknown_keys(keys or set())

    def plain(key: str) -> str | None:
        value = get(key)
        return None if value is None or value == "" else value

    values: dict[str, Any] = {}
    for key in TABLE:
        raw = get(key.name) if not key.blank_is_unset else plain(key.name)
        value = copy.deepcopy(key.default) if raw is None else key.check(raw, key.name, problems)
        if failed(value):
            value = copy.deepcopy(key.default)
        values[key.name] = secrets.get(key.name) if key.secret else value
    parsed = Parsed(values, plain, problems, os.environ if environ is None else environ)
    for rule in RULES:
        rule(parsed)
    if problems:
        raise SettingsError("invalid config:\n  " + "\n  ".join(problems))
    return Settings(**{key.attribute: parsed[key.name] for key in TABLE})
