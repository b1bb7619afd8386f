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
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from .names import service_dns_names
from .validators import (
    INVALID,
    Check,
    Field,
    Problems,
    all_of,
    boolean,
    dns_label,
    failed,
    host_key,
    hostname_problem,
    integer,
    ip_address,
    is_ip,
    json_list,
    json_object,
    machine,
    matches,
    network,
    obj,
    one_of,
    refuse,
    ssh_port,
    ssh_user,
    text,
)

CONFIG_NAMESPACE = "registry"

# The registry image is pinned to a patch release: a floating tag would let a
# pod restart change the registry under the user's feet. Distribution 3, since
# 2.8's `garbage-collect --delete-untagged` deletes the platform images and
# attestations of every tagged multi-arch or buildx index (distribution#3178,
# #3004; tests/test_gc.py). 3.1.1 is the newest 3.x that Docker Hub's official
# image carries (docker-library/official-images#21360); the tests build the
# same version from the Go module proxy (tests/build_registry.sh).
DEFAULT_IMAGE = "registry:3.1.1"


def distribution_major(image: str) -> int | None:
    """The registry's major version as the image's tag says it (registry:2.8.3 -> 2),
    or None when the tag does not say (a digest, latest, a tag of the user's)."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    tag = name.split(":", 1)[1] if ":" in name else ""
    found = re.match(r"^v?(\d+)(?:[.-]|$)", tag)
    return int(found.group(1)) if found else None


RUNTIMES = ("auto", "docker", "containerd", "crio", "k3s")
STORAGES = ("pvc", "s3", "node")
DEFAULT_STORAGE_PATH = "/var/lib/registry-data"
# Where a storage path may lie: below one of these, never a system folder
# (an allowlist, since the folder is handed to uid 1000 and a denylist never
# ends: /etc/kubernetes/manifests, /usr/local/bin, /root/.ssh, /boot/efi...).
STORAGE_PREFIXES = ("/var/lib/", "/srv/", "/data/", "/mnt/")
_PATH = re.compile(r"^(/[A-Za-z0-9._+-]+)+$")
MAX_REPLICAS = 20
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_NODE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
# S3's bucket naming rules, the part every S3 API enforces.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# The registry container's resources unless `resources` says otherwise.
DEFAULT_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
_RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")
_CPU = re.compile(r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$")
# A label key: an optional DNS-subdomain prefix and a name of up to 63 characters.
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
_AFFINITY_KEYS = {"nodeAffinity", "podAffinity", "podAntiAffinity"}
MAX_CA_GENERATION = 1000
DEFAULT_GC_SCHEDULE = "0 3 * * 0"
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?-]+$")
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# Namespaces the cluster itself owns: the program creates its namespace and
# deletes it on destroy, which these must never be.
CLUSTER_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
# Names every node's /etc/hosts already gives to the node itself.
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
# The CA's common name is "<hostname> registry CA", and a common name holds at most 64 characters.
MAX_HOSTNAME = 64 - len(" registry CA")


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
    kube: KubeAccess = KubeAccess()

    @property
    def endpoint(self) -> str:
        return f"{self.hostname}:{self.port}"

    @property
    def cluster_dns_endpoints(self) -> list[str]:
        """The Service's cluster DNS names, as in-cluster builders dial them."""
        return [f"{name}:{self.port}" for name in service_dns_names(self.namespace)]

    @property
    def external_endpoints(self) -> list[str]:
        return [f"{url_host(node.host)}:{self.node_port}" for node in self.nodes]

    def __repr__(self) -> str:  # never print the key, even by accident
        return f"Settings(hostname={self.hostname!r}, namespace={self.namespace!r}, nodes={len(self.nodes)})"


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# ---- checks of single keys --------------------------------------------------------


def registry_hostname(value: Any, where: str, problems: Problems) -> Any:
    problem = hostname_problem(value)
    if not problem and (value in LOCAL_NAMES or value.endswith(".localhost")):
        problem = "already names the node itself in every node's /etc/hosts"
    if not problem and len(value) > MAX_HOSTNAME:
        problem = (
            f"is {len(value)} characters; at most {MAX_HOSTNAME} fit, so that "
            "'<hostname> registry CA' fits the 64 characters of a certificate's common name"
        )
    if problem:
        return refuse(problems, where, repr(value), f"{problem}; expected a lower-case DNS name such as image-registry")
    return value


def storage_class(value: Any, where: str, problems: Problems) -> Any:
    problem = hostname_problem(value)
    if problem:
        return refuse(problems, where, repr(value), f"{problem}; expected the name of a StorageClass")
    return value


NAMESPACE_NAME = "is not a namespace name: lower-case letters, digits and '-', at most 63"


def own_namespace(value: Any, where: str, problems: Problems) -> Any:
    if not dns_label(value):
        return refuse(problems, where, repr(value), NAMESPACE_NAME)
    if value in CLUSTER_NAMESPACES:
        return refuse(
            problems,
            where,
            repr(value),
            "is a namespace the cluster owns; the program creates its namespace "
            "and deletes it on destroy, so name a new one, such as registry",
        )
    return value


def quantity(value: Any, where: str, problems: Problems) -> Any:
    found = _QUANTITY.match(value)
    if not found or float(found.group().rstrip("KMGTPEik")) <= 0:
        return refuse(problems, where, repr(value), "is not a positive Kubernetes quantity such as 10Gi or 500Mi")
    return value


def user(value: Any, where: str, problems: Problems) -> Any:
    if not isinstance(value, str) or not value:
        return refuse(problems, where, json.dumps(value), "must be a non-empty string")
    if ":" in value or any(c.isspace() for c in value):
        return refuse(
            problems, where, repr(value), "must not contain ':' or whitespace (htpasswd uses ':' as separator)"
        )
    return value


def namespace_name(value: Any, where: str, problems: Problems) -> Any:
    return value if dns_label(value) else refuse(problems, where, json.dumps(value), NAMESPACE_NAME)


def cron(raw: Any, where: str, problems: Problems) -> Any:
    """A CronJob schedule: five fields or a macro; "" for none."""
    value = str(raw).strip()
    if value == "":
        return None
    fields = value.split()
    if not (value in _CRON_MACROS or (len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields))):
        return refuse(
            problems,
            where,
            repr(raw),
            'is not a cron schedule: five fields such as "0 3 * * 0", a macro such as @weekly, or "" for none',
        )
    return value


def secret_reference(raw: Any, where: str, problems: Problems) -> Any:
    """`<namespace>/<name>` of a Secret."""
    namespace, _, name = raw.partition("/")
    if not (dns_label(namespace) and hostname_problem(name) is None):
        return refuse(
            problems, where, repr(raw), "is not <namespace>/<name> of a Secret, such as cert-manager/registry-tls"
        )
    return namespace, name


def docker_config(raw: Any, where: str, problems: Problems) -> Any:
    """A .dockerconfigjson document; checked here, kept secret elsewhere (never shown)."""
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not isinstance(value.get("auths"), dict) or not value["auths"]:
        return refuse(
            problems,
            where,
            "(secret, not shown)",
            "must be a .dockerconfigjson document, "
            '{"auths": {"<registry>": {"auth": "<base64 user:password>"}}}, '
            "such as ~/.docker/config.json after a docker login",
        )
    return raw


def whole(check: Check) -> Check:
    """All or nothing: INVALID when `check` found any problem."""

    def checked(raw: Any, where: str, problems: Problems) -> Any:
        count = len(problems)
        value = check(raw, where, problems)
        return INVALID if len(problems) > count else value

    return checked


def _resource_amounts(value: dict, where: str, problems: Problems) -> dict:
    if not value or set(value) - {"requests", "limits"}:
        refuse(problems, where, json.dumps(value), "must have requests and/or limits, and nothing else")
    for part, amounts in value.items():
        if part not in ("requests", "limits"):
            continue
        if not isinstance(amounts, dict) or set(amounts) - set(_RESOURCE_NAMES):
            refuse(
                problems, f"{where}.{part}", json.dumps(amounts), f"must be an object of {', '.join(_RESOURCE_NAMES)}"
            )
            continue
        for name, amount in amounts.items():
            pattern = _CPU if name == "cpu" else _QUANTITY
            if not isinstance(amount, str) or not pattern.match(amount):
                example = "500m or 2" if name == "cpu" else "512Mi"
                refuse(
                    problems,
                    f"{where}.{part}.{name}",
                    json.dumps(amount),
                    f"is not a Kubernetes quantity such as {example} (give it as a string)",
                )
    return value


def _labels(value: dict, where: str, problems: Problems) -> dict:
    for label, wanted in value.items():
        prefix, _, name = label.rpartition("/")
        if not _LABEL_NAME.match(name) or (prefix and not _LABEL_PREFIX.match(prefix)):
            refuse(
                problems,
                where,
                json.dumps(label),
                "has a key that is not a label key, such as kubernetes.io/hostname or disktype",
            )
        if not isinstance(wanted, str) or not _LABEL_VALUE.match(wanted):
            refuse(
                problems,
                f"{where}.{label}",
                json.dumps(wanted),
                "is not a label value: up to 63 letters, digits, '-', '_' and '.', as a string",
            )
    return value


def _toleration(item: Any, where: str, problems: Problems) -> Any:
    if not isinstance(item, dict) or not item or set(item) - _TOLERATION_KEYS:
        return refuse(problems, where, json.dumps(item), f"must be an object of {', '.join(sorted(_TOLERATION_KEYS))}")
    operator = item.get("operator", "Equal")
    if operator not in ("Equal", "Exists"):
        refuse(problems, f"{where}.operator", json.dumps(operator), "must be Equal or Exists")
    if operator == "Exists" and item.get("value"):
        refuse(problems, f"{where}.value", json.dumps(item["value"]), "must be empty with operator Exists")
    if "key" not in item and operator != "Exists":
        refuse(problems, where, json.dumps(item), "needs a key, or operator Exists to tolerate every taint")
    for name in ("key", "value"):
        if name in item and not isinstance(item[name], str):
            refuse(problems, f"{where}.{name}", json.dumps(item[name]), "must be a string")
    if item.get("effect", "") not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute"):
        refuse(
            problems, f"{where}.effect", json.dumps(item["effect"]), "must be NoSchedule, PreferNoSchedule or NoExecute"
        )
    seconds = item.get("tolerationSeconds")
    if seconds is not None and (
        not isinstance(seconds, int) or isinstance(seconds, bool) or item.get("effect") != "NoExecute"
    ):
        refuse(
            problems,
            f"{where}.tolerationSeconds",
            json.dumps(seconds),
            "must be a whole number of seconds, with effect NoExecute",
        )
    return item


def _affinity(value: dict, where: str, problems: Problems) -> Any:
    if not value or set(value) - _AFFINITY_KEYS or not all(isinstance(v, dict) for v in value.values()):
        return refuse(
            problems,
            where,
            json.dumps(value),
            f"must be an object of {', '.join(sorted(_AFFINITY_KEYS))}, each an object as in a pod spec",
        )
    return value


def _node_host(value: Any, where: str, problems: Problems) -> Any:
    if not isinstance(value, str) or not value:
        return refuse(problems, where, json.dumps(value), NODE_HOST_REQUIRED)
    if not is_ip(value) and hostname_problem(value.lower()):
        return refuse(problems, where, repr(value), "is neither an IP address nor a DNS name")
    return value


def _bastion_host(value: Any, where: str, problems: Problems) -> Any:
    if not isinstance(value, str) or not value or (not is_ip(value) and hostname_problem(value.lower())):
        return refuse(problems, where, json.dumps(value), BASTION_HOST_REQUIRED)
    return value


NODE_NAME = "must be a name of letters, digits, '.', '_' or '-'"
NODE_HOST_REQUIRED = "is required: the node's IP address or DNS name for SSH"
BASTION_HOST_REQUIRED = "is required: the jump host's IP address or DNS name"

# A node entry. `user` stays "" when not given: the rule below gives it registry:sshUser.
_NODE = obj(
    {
        "name": Field(matches(_NODE_NAME.pattern, NODE_NAME, json.dumps), required=NODE_NAME),
        "host": Field(_node_host, required=NODE_HOST_REQUIRED),
        "port": Field(ssh_port, 22),
        "user": Field(ssh_user, ""),
        "runtime": Field(one_of(*RUNTIMES, show=json.dumps), "auto"),
        "hostKey": Field(host_key, None),
    },
    lambda name, host, port, user, runtime, hostKey: Node(name, host, port, user, runtime, hostKey),
    not_object="must be an object {name, host, port?, user?, runtime?}",
)


def node_list(raw: Any, where: str, problems: Problems) -> Any:
    """registry:nodes: every entry checked, names and machines unique."""
    entries = json_list(text)(raw, where, problems)
    if failed(entries):
        return entries
    nodes: list[Node] = []
    names: set[str] = set()
    hosts: set[str] = set()
    for index, entry in enumerate(entries):
        at = f"{where}[{index}]"
        node = _NODE(entry, at, problems)
        if not isinstance(entry, dict):
            continue
        name, host = entry.get("name"), entry.get("host")
        if isinstance(name, str) and _NODE_NAME.match(name) and name in names:
            node = refuse(problems, f"{at}.name", repr(name), "is used by another node; node names must be unique")
        if (
            isinstance(host, str)
            and host
            and (is_ip(host) or not hostname_problem(host.lower()))
            and machine(host) in hosts
        ):
            node = refuse(
                problems,
                f"{at}.host",
                repr(host),
                "is the same machine as another node's host; node hosts must be unique",
            )
        if isinstance(name, str):
            names.add(name)
        if isinstance(host, str) and host:
            hosts.add(machine(host))
        if not failed(node):
            nodes.append(node)
    return tuple(nodes)


_S3_SHAPE = "{bucket, endpoint, forcePathStyle, redirect, region, rootDirectory}"
_BUCKET_NAME = "is required: a bucket name of 3-63 lower-case letters, digits, '.' and '-'"


def _endpoint(value: Any, where: str, problems: Problems) -> Any:
    try:
        url = urllib.parse.urlsplit(value) if isinstance(value, str) else None
    except ValueError:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.hostname:
        return refuse(
            problems,
            where,
            json.dumps(value),
            "must be an http:// or https:// URL, such as https://minio.example.internal:9000",
        )
    return value


def _flag(value: Any, where: str, problems: Problems) -> Any:
    return value if isinstance(value, bool) else refuse(problems, where, json.dumps(value), "must be true or false")


_S3 = obj(
    {
        "bucket": Field(matches(_BUCKET.pattern, _BUCKET_NAME, json.dumps), required=_BUCKET_NAME),
        "endpoint": Field(_endpoint, None),
        "region": Field(matches(r"\S+", "must be a region name such as us-east-1", json.dumps), "us-east-1"),
        "rootDirectory": Field(
            matches(r"/\S*", "must be a path starting with '/', such as /registry", json.dumps), None
        ),
        # Path style by default with an endpoint of the user's (MinIO, SeaweedFS...), not on AWS.
        "forcePathStyle": Field(_flag, None),
        "redirect": Field(_flag, False),
    },
    dict,
)

_BASTION = obj(
    {
        "host": Field(_bastion_host, required=BASTION_HOST_REQUIRED),
        "port": Field(ssh_port, 22),
        "user": Field(ssh_user, ""),
        "hostKey": Field(host_key, None),
    },
    lambda host, port, user, hostKey: Bastion(host, port, user, hostKey),
)


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
        matches(r"\S+", f"must be an image reference without spaces, such as {DEFAULT_IMAGE}"),
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
        "storage",
        one_of(*STORAGES),
        "pvc",
        "Where the registry keeps images, pvc (one volume), node (a folder on one node) or s3 (object storage).",
    ),
    Key("replicas", integer(1, MAX_REPLICAS), 1, "Pods serving the registry; more than 1 needs storage s3."),
    Key("s3", text, None, f"With storage s3: {_S3_SHAPE}."),
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
        _object("{requests?: {cpu?, memory?}, limits?: {cpu?, memory?}}", whole(_resource_amounts)),
        DEFAULT_RESOURCES,
        "The container's requests and limits.",
    ),
    Key("nodeSelector", _object("of node label to value", whole(_labels)), {}, "Node labels the pod must match."),
    Key("tolerations", whole(json_list(_toleration)), (), "Taints the pod tolerates."),
    Key(
        "affinity",
        _object("{nodeAffinity?, podAffinity?, podAntiAffinity?}", _affinity),
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
    Key("sshAgent", boolean, False, "Use the keys of the ssh-agent at SSH_AUTH_SOCK."),
    Key(
        "sshBastion",
        _object("{host, port?, user?, hostKey?}", _BASTION),
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


def users_default_to_ssh_user(c: Parsed) -> None:
    c["nodes"] = tuple(node if node.user else dataclasses.replace(node, user=c["sshUser"]) for node in c["nodes"])
    if c["sshBastion"] is not None and not c["sshBastion"].user:
        c["sshBastion"] = dataclasses.replace(c["sshBastion"], user=c["sshUser"])


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
    if raw_node is None or node is None:
        c.problem(
            f"registry:storageNode {repr(raw_node) if raw_node else '(unset)'} must name the node entry "
            "(registry:nodes[].name, and the node's Kubernetes name) that keeps the data; "
            f"entries: {names or 'none'}"
        )
    path = raw_path or DEFAULT_STORAGE_PATH
    if (
        not _PATH.match(path)
        or "/../" in path + "/"
        or "/./" in path + "/"
        or not any(path.startswith(prefix) for prefix in STORAGE_PREFIXES)
    ):
        c.problem(
            f"registry:storagePath {path!r} must be an absolute folder of its own such as /var/lib/registry-data "
            f"(letters, digits, . _ + -; not a system folder: below {', '.join(STORAGE_PREFIXES)})"
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
    value = json_object(_S3_SHAPE)(raw, "s3", c.problems)
    if failed(value):
        return
    fields = _S3(value, "s3", c.problems)
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
    if c["nodes"] and c["sshPrivateKey"] is None and not c["sshAgent"]:
        c.problem(
            f"registry:sshPrivateKey is not set, but registry:nodes lists {len(c['nodes'])} node(s); "
            "set it with `pulumi config set --secret registry:sshPrivateKey < key`, or set registry:sshAgent true "
            "to use the keys of your ssh-agent"
        )
    if c.plain("sshKeyPassphrase") and c["sshPrivateKey"] is None:
        c.problem("registry:sshKeyPassphrase is set without registry:sshPrivateKey; give the key too")


def secrets_only_where_used(c: Parsed) -> None:
    if c["s3"] is None:
        c["s3SecretAccessKey"] = None
    for key in ("imagePullSecret", "sshKeyPassphrase"):
        if not c.plain(key):
            c[key] = None


RULES: tuple[Callable[[Parsed], None], ...] = (
    cluster_ip_in_range,
    users_default_to_ssh_user,
    replicas_need_s3,
    node_storage,
    s3_storage,
    collection_needs_a_volume_and_distribution_3,
    one_certificate_source,
    ssh_credentials,
    secrets_only_where_used,
)


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
