"""Read and validate the stack's config once, before any resource exists.

Every other module takes a `Settings`; nothing else calls `pulumi.Config`.
A bad value stops the program with one message that names the key, the value
and what would be accepted (pulumi.RunError prints it without a traceback).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import difflib
import ipaddress
import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pulumi

CONFIG_NAMESPACE = "registry"

# The registry image is pinned to a patch release: a floating tag would let a
# pod restart change the registry under the user's feet. Distribution 3, since
# 2.8's `garbage-collect --delete-untagged` deletes the platform images and
# attestations of every tagged multi-arch or buildx index (distribution#3178,
# #3004; tests/test_gc.py). 3.1.1 is the newest 3.x that Docker Hub's official
# image carries (docker-library/official-images#21360); the tests build the
# same version from the Go module proxy (tests/build_registry.sh).
DEFAULT_IMAGE = "registry:3.1.1"

def distribution_major(image: str) -> Optional[int]:
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

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_NODE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_NODE_KEYS = {"name", "host", "port", "user", "runtime", "hostKey"}
_BASTION_KEYS = {"host", "port", "user", "hostKey"}
# An OpenSSH public key line, as `ssh-keyscan` prints after the host name.
_HOST_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
_S3_KEYS = {"bucket", "endpoint", "region", "forcePathStyle", "rootDirectory", "redirect"}
# S3's bucket naming rules, the part every S3 API enforces.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
KEYS = frozenset({
    "hostname", "namespace", "port", "serviceCidr", "clusterIp", "nodePort", "image", "storageSize",
    "storageClass", "users", "pullSecretNamespaces", "certValidityDays", "nodes", "sshUser", "sshPrivateKey",
    "storage", "replicas", "s3", "s3AccessKeyId", "s3SecretAccessKey",
    "caGeneration", "gcSchedule", "metrics", "discovery",
    "resources", "nodeSelector", "tolerations", "affinity", "imagePullSecret",
    "storageNode", "storagePath", "keepData",
    "sshAgent", "sshBastion", "sshKeyPassphrase", "serviceAccountPullSecret",
    "tlsCertificate", "tlsKey", "tlsCa", "tlsSecret",
})
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
    host_key: Optional[str] = None

    @property
    def is_ip(self) -> bool:
        return _is_ip(self.host)


@dataclass(frozen=True)
class Bastion:
    """A jump host the node connections go through (registry:sshBastion)."""

    host: str
    port: int
    user: str
    host_key: Optional[str] = None


@dataclass(frozen=True)
class S3:
    """Object storage for the registry's data (the registry's s3 storage driver)."""

    bucket: str
    region: str
    endpoint: Optional[str]
    force_path_style: bool
    root_directory: Optional[str]
    redirect: bool
    # With it, the secret key is in Settings.s3_secret_access_key; without
    # both, the pod's own cloud identity is used.
    access_key_id: Optional[str]


@dataclass(frozen=True)
class KubeAccess:
    """How pulumi-kubernetes reaches the cluster (its own `kubernetes:` config), for
    registry/preflight.py to read the same cluster."""

    # A path, or the kubeconfig's text (it may hold credentials: never printed).
    kubeconfig: Optional[str] = field(default=None, repr=False)
    context: Optional[str] = None
    # kubernetes:cluster: the kubeconfig cluster to use instead of the context's.
    cluster: Optional[str] = None


@dataclass(frozen=True)
class Settings:
    hostname: str
    namespace: str
    port: int
    service_cidr: str
    cluster_ip: Optional[str]
    node_port: int
    image: str
    storage_size: str
    storage_class: Optional[str]
    users: tuple[str, ...]
    pull_secret_namespaces: tuple[str, ...]
    cert_validity_days: int
    nodes: tuple[Node, ...]
    ssh_user: str
    storage: str
    replicas: int
    s3: Optional[S3]
    # storage node: the node entry whose folder holds the data, and the folder.
    storage_node: Optional[Node] = None
    storage_path: Optional[str] = None
    # Whether destroy leaves the image data (storage node's folder) in place.
    keep_data: bool = False
    ca_generation: int = 1
    # Cron schedule of garbage collection; None: no collection.
    gc_schedule: Optional[str] = None
    metrics: bool = True
    discovery: bool = True
    # Scheduling, as the pod gets them.
    resources: dict = field(default_factory=lambda: copy.deepcopy(DEFAULT_RESOURCES))
    node_selector: dict = field(default_factory=dict)
    tolerations: tuple = ()
    affinity: Optional[dict] = None
    # Secrets: kept out of every repr and component input.
    ssh_private_key: Optional[pulumi.Output[str]] = None
    s3_secret_access_key: Optional[pulumi.Output[str]] = None
    # A .dockerconfigjson document for pulling the registry's own image.
    image_pull_secret: Optional[pulumi.Output[str]] = None
    # SSH as operators have it: the key's passphrase, an ssh-agent, a bastion.
    ssh_key_passphrase: Optional[pulumi.Output[str]] = None
    ssh_agent: bool = False
    ssh_bastion: Optional[Bastion] = None
    # Add the pull secret to each listed namespace's default ServiceAccount.
    service_account_pull_secret: bool = False
    # A server certificate the user brings, its key (secret) and the CA nodes trust for it.
    tls_certificate: Optional[str] = None
    tls_key: Optional[pulumi.Output[str]] = None
    tls_ca: Optional[str] = None
    # Or a kubernetes.io/tls Secret the user keeps in the cluster (cert-manager's,
    # say), as (namespace, name): read and checked by registry/preflight.py.
    tls_secret: Optional[tuple[str, str]] = None
    kube: KubeAccess = KubeAccess()

    @property
    def endpoint(self) -> str:
        return f"{self.hostname}:{self.port}"

    @property
    def cluster_dns_endpoints(self) -> list[str]:
        """The Service's cluster DNS names, as in-cluster builders dial them."""
        return [f"registry.{self.namespace}.svc:{self.port}", f"registry.{self.namespace}.svc.cluster.local:{self.port}"]

    @property
    def external_endpoints(self) -> list[str]:
        return [f"{_url_host(node.host)}:{self.node_port}" for node in self.nodes]

    def __repr__(self) -> str:  # never print the key, even by accident
        return f"Settings(hostname={self.hostname!r}, namespace={self.namespace!r}, nodes={len(self.nodes)})"


def load_settings() -> Settings:
    """Read the `registry:` config of the current stack."""
    config = pulumi.Config(CONFIG_NAMESPACE)
    settings = parse_settings(
        config.get, config.get_secret("sshPrivateKey"), keys=config_keys(),
        s3_secret_access_key=config.get_secret("s3SecretAccessKey"),
        image_pull_secret=config.get_secret("imagePullSecret"),
        ssh_key_passphrase=config.get_secret("sshKeyPassphrase"),
        tls_key=config.get_secret("tlsKey"),
    )
    provider = pulumi.Config("kubernetes")
    kube = KubeAccess(provider.get("kubeconfig"), provider.get("context"), provider.get("cluster"))
    return dataclasses.replace(settings, kube=kube)


def config_keys() -> set[str]:
    """The keys set in the `registry:` namespace.

    The SDK has no call that lists config; the language host hands the stack's
    config to the program as this map (pulumi/runtime/config.py), or as PULUMI_CONFIG.
    """
    from pulumi.runtime import config as runtime_config

    every = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = CONFIG_NAMESPACE + ":"
    return {key[len(prefix):].removeprefix("config:") for key in every if key.startswith(prefix)}


def parse_settings(
    get: Callable[[str], Optional[str]],
    ssh_private_key: Optional[pulumi.Output[str]] = None,
    keys: Optional[set[str]] = None,
    s3_secret_access_key: Optional[pulumi.Output[str]] = None,
    image_pull_secret: Optional[pulumi.Output[str]] = None,
    ssh_key_passphrase: Optional[pulumi.Output[str]] = None,
    environ: Optional[dict] = None,
    tls_key: Optional[pulumi.Output[str]] = None,
) -> Settings:
    """Build Settings from raw config strings; `get(key)` returns None when unset.

    `keys` are the keys the stack sets, checked against the known ones.
    Defaults repeat those in Pulumi.yaml because the CLI alone applies those.
    """
    problems: list[str] = []
    by_lower = {k.lower(): k for k in KEYS}
    for key in sorted((keys or set()) - KEYS):
        close = difflib.get_close_matches(key.lower(), by_lower, n=1, cutoff=0.6)
        hint = f"did you mean registry:{by_lower[close[0]]}? " if close else ""
        problems.append(f"registry:{key} is not a setting of this program; {hint}settings: {', '.join(sorted(KEYS))}")
    p = _Parser(get, problems)

    hostname = p.hostname("hostname", "image-registry")
    namespace = p.own_namespace("namespace", "registry")
    port = p.integer("port", 5000, 1, 65535)
    service_cidr = p.network("serviceCidr", "10.96.0.0/12")
    cluster_ip = p.cluster_ip("clusterIp", service_cidr)
    node_port = p.integer("nodePort", 30500, 30000, 32767)
    image = p.image("image", DEFAULT_IMAGE)
    storage_size = p.quantity("storageSize", "10Gi")
    storage_class = p.optional_hostname("storageClass")
    users = p.users("users", ["admin"])
    pull_namespaces = p.label_list("pullSecretNamespaces", ["default"])
    validity = p.integer("certValidityDays", 365, 1, 825)
    ssh_user = p.user_name("sshUser", "root")
    nodes = p.nodes("nodes", ssh_user or "root")
    storage = p.choice("storage", "pvc", STORAGES)
    replicas = p.integer("replicas", 1, 1, MAX_REPLICAS)
    if replicas > 1 and storage != "s3":
        problems.append(
            f"registry:replicas {replicas} needs registry:storage s3: storage {storage} is one "
            + ("ReadWriteOnce volume" if storage == "pvc" else "folder on one node") + ", which only one pod can use"
        )
    storage_node, storage_path, keep_data = p.node_storage(storage, nodes)
    s3 = p.s3("s3", storage, has_secret_key=s3_secret_access_key is not None)
    ca_generation = p.integer("caGeneration", 1, 1, MAX_CA_GENERATION)
    # Collection switches the registry to read-only through a flag on its
    # volume (registry/maintenance.py); replicas on a bucket share no volume.
    # Pulumi.yaml's default reaches the program on s3 stacks too (the CLI
    # requires a default for a declared key, and it cannot depend on storage),
    # so the default means "none" there; any other schedule is refused.
    gc_schedule = p.cron("gcSchedule", DEFAULT_GC_SCHEDULE)
    if gc_schedule == DEFAULT_GC_SCHEDULE and storage == "s3":
        gc_schedule = None
    if gc_schedule and storage == "s3":
        problems.append(
            f"registry:gcSchedule {gc_schedule!r} needs registry:storage pvc: with s3 the replicas share no volume "
            'to switch to read-only together; set registry:gcSchedule "" and collect as the README says'
        )
    if gc_schedule and distribution_major(image) == 2:
        problems.append(
            f"registry:gcSchedule {gc_schedule!r} needs distribution 3, and registry:image {image} is distribution 2, "
            "whose garbage-collect --delete-untagged deletes the platform images and attestations of every multi-arch "
            f'and buildx image (distribution#3178); use registry:image {DEFAULT_IMAGE}, or set registry:gcSchedule ""'
        )
    metrics = p.boolean("metrics", True)
    discovery = p.boolean("discovery", True)
    resources = p.resources("resources")
    node_selector = p.node_selector("nodeSelector")
    tolerations = p.tolerations("tolerations")
    affinity = p.affinity("affinity")
    p.docker_config("imagePullSecret")
    service_account_pull_secret = p.boolean("serviceAccountPullSecret", False)
    tls_certificate, tls_ca = p._raw("tlsCertificate"), p._raw("tlsCa")
    tls_secret = p.secret_reference("tlsSecret")
    if tls_secret is not None and (tls_certificate is not None or p._raw("tlsKey") is not None):
        problems.append("registry:tlsSecret and registry:tlsCertificate/tlsKey are both set; the certificate comes "
                        "from one of them: the Secret, or the config")
    elif tls_certificate is None and tls_secret is None and (tls_ca is not None or p._raw("tlsKey") is not None):
        problems.append("registry:tlsKey or registry:tlsCa is set without registry:tlsCertificate; give all three, or none")
    elif tls_certificate is not None:
        from .own_certificate import problems as certificate_problems

        problems.extend(certificate_problems(tls_certificate, p._raw("tlsKey"), tls_ca, hostname))
    if (tls_certificate is not None or tls_secret is not None) and ca_generation != 1:
        problems.append("registry:caGeneration is set, but the certificate is the user's, with its own CA; rotate by "
                        "giving the new CA in registry:tlsCa next to the old one, then the new certificate")
    ssh_agent = p.boolean("sshAgent", False)
    ssh_bastion = p.bastion("sshBastion", ssh_user or "root")
    if ssh_agent and not (environ if environ is not None else os.environ).get("SSH_AUTH_SOCK"):
        problems.append(
            "registry:sshAgent is true, but SSH_AUTH_SOCK is not set where pulumi runs; "
            "start an agent and add the key (eval $(ssh-agent); ssh-add), or give registry:sshPrivateKey"
        )
    if nodes and ssh_private_key is None and not ssh_agent:
        problems.append(
            f"registry:sshPrivateKey is not set, but registry:nodes lists {len(nodes)} node(s); "
            "set it with `pulumi config set --secret registry:sshPrivateKey < key`, or set registry:sshAgent true "
            "to use the keys of your ssh-agent"
        )
    if get("sshKeyPassphrase") and ssh_private_key is None:
        problems.append("registry:sshKeyPassphrase is set without registry:sshPrivateKey; give the key too")

    if problems:
        raise SettingsError("invalid config:\n  " + "\n  ".join(problems))
    return Settings(
        hostname=hostname,
        namespace=namespace,
        port=port,
        service_cidr=str(service_cidr),
        cluster_ip=cluster_ip,
        node_port=node_port,
        image=image,
        storage_size=storage_size,
        storage_class=storage_class,
        users=tuple(users),
        pull_secret_namespaces=tuple(pull_namespaces),
        cert_validity_days=validity,
        nodes=tuple(nodes),
        ssh_user=ssh_user,
        storage=storage,
        replicas=replicas,
        s3=s3,
        storage_node=storage_node,
        storage_path=storage_path,
        keep_data=keep_data,
        ca_generation=ca_generation,
        gc_schedule=gc_schedule,
        metrics=metrics,
        discovery=discovery,
        resources=resources,
        node_selector=node_selector,
        tolerations=tuple(tolerations),
        affinity=affinity,
        image_pull_secret=image_pull_secret if get("imagePullSecret") else None,
        ssh_key_passphrase=ssh_key_passphrase if get("sshKeyPassphrase") else None,
        ssh_agent=ssh_agent,
        ssh_bastion=ssh_bastion,
        service_account_pull_secret=service_account_pull_secret,
        tls_certificate=tls_certificate,
        tls_key=tls_key if tls_certificate is not None else None,
        tls_ca=tls_ca if tls_certificate is not None or tls_secret is not None else None,
        tls_secret=tls_secret,
        ssh_private_key=ssh_private_key,
        s3_secret_access_key=s3_secret_access_key if s3 is not None else None,
    )


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _machine(host: str) -> str:
    """One spelling per machine: DNS names in lower case, addresses in canonical form
    (an IPv4 address written as IPv6, ::ffff:a.b.c.d, is that IPv4 address)."""
    if _is_ip(host):
        address = ipaddress.ip_address(host)
        mapped = getattr(address, "ipv4_mapped", None)
        return str(mapped or address)
    return host.lower()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def hostname_problem(value: str) -> Optional[str]:
    """Why `value` is not a lowercase DNS name (RFC 1123), or None."""
    if not value:
        return "is empty"
    if value.endswith("."):
        return "ends with a dot"
    if len(value) > 253:
        return "is longer than 253 characters"
    for label in value.split("."):
        if len(label) > 63:
            return f"has the label {label!r} longer than 63 characters"
        if not _DNS_LABEL.match(label):
            return (
                f"has the label {label!r}; labels are lower-case letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
    return None


class _Parser:
    """Reads one key at a time; records a problem and returns the default on a bad value."""

    def __init__(self, get: Callable[[str], Optional[str]], problems: list[str]):
        self._get = get
        self.problems = problems

    def _bad(self, key: str, value: Any, accepted: str) -> None:
        self.problems.append(f"registry:{key} {value} {accepted}")

    def _raw(self, key: str) -> Optional[str]:
        value = self._get(key)
        return None if value is None or value == "" else value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        raw = self._raw(key)
        if raw is None:
            return default
        try:
            value = int(str(raw).strip())
        except ValueError:
            self._bad(key, repr(raw), f"is not a whole number; it must be between {low} and {high}")
            return default
        if not low <= value <= high:
            self._bad(key, value, f"must be between {low} and {high}")
            return default
        return value

    def hostname(self, key: str, default: str) -> str:
        value = self._raw(key) or default
        problem = hostname_problem(value)
        if not problem and (value in LOCAL_NAMES or value.endswith(".localhost")):
            problem = "already names the node itself in every node's /etc/hosts"
        if not problem and len(value) > MAX_HOSTNAME:
            problem = (
                f"is {len(value)} characters; at most {MAX_HOSTNAME} fit, so that "
                "'<hostname> registry CA' fits the 64 characters of a certificate's common name"
            )
        if problem:
            self._bad(key, repr(value), f"{problem}; expected a lower-case DNS name such as image-registry")
            return default
        return value

    def optional_hostname(self, key: str) -> Optional[str]:
        value = self._raw(key)
        if value is None:
            return None
        problem = hostname_problem(value)
        if problem:
            self._bad(key, repr(value), f"{problem}; expected the name of a StorageClass")
            return None
        return value

    def dns_label(self, key: str, default: str) -> str:
        value = self._raw(key) or default
        if len(value) > 63 or not _DNS_LABEL.match(value):
            self._bad(key, repr(value), "is not a namespace name: lower-case letters, digits and '-', at most 63")
            return default
        return value

    def secret_reference(self, key: str) -> Optional[tuple[str, str]]:
        """`<namespace>/<name>` of a Secret, or None when unset."""
        raw = self._raw(key)
        if raw is None:
            return None
        namespace, _, name = raw.partition("/")
        if not (_DNS_LABEL.match(namespace) and len(namespace) <= 63 and hostname_problem(name) is None):
            self._bad(key, repr(raw), "is not <namespace>/<name> of a Secret, such as cert-manager/registry-tls")
            return None
        return namespace, name

    def own_namespace(self, key: str, default: str) -> str:
        value = self.dns_label(key, default)
        if value in CLUSTER_NAMESPACES:
            self._bad(
                key, repr(value),
                "is a namespace the cluster owns; the program creates its namespace and deletes it on "
                "destroy, so name a new one, such as registry",
            )
            return default
        return value

    def network(self, key: str, default: str) -> Any:
        raw = self._raw(key) or default
        try:
            return ipaddress.ip_network(raw, strict=True)
        except ValueError:
            self._bad(key, repr(raw), "is not a network in CIDR form with no host bits set, such as 10.96.0.0/12")
            return ipaddress.ip_network(default)

    def cluster_ip(self, key: str, network: Any) -> Optional[str]:
        raw = self._raw(key)
        if raw is None:
            return None
        try:
            address = ipaddress.ip_address(raw)
        except ValueError:
            self._bad(key, repr(raw), "is not an IP address")
            return None
        if address.version != network.version or address not in network:
            self._bad(key, raw, f"is outside registry:serviceCidr {network}")
            return None
        if address in (network.network_address, network.broadcast_address):
            self._bad(key, raw, f"is the network or broadcast address of registry:serviceCidr {network}")
            return None
        if address == network.network_address + 1:
            self._bad(
                key, raw,
                f"is the first address of registry:serviceCidr {network}, which the API server's own "
                "Service (kubernetes.default) takes; choose another free address in the range",
            )
            return None
        return str(address)

    def boolean(self, key: str, default: bool) -> bool:
        raw = self._raw(key)
        if raw is None:
            return default
        value = str(raw).strip().lower()
        if value not in ("true", "false"):
            self._bad(key, repr(raw), "must be true or false")
            return default
        return value == "true"

    def cron(self, key: str, default: str) -> Optional[str]:
        """A CronJob schedule: five fields or a macro; set to "" for none."""
        raw = self._get(key)
        if raw is None:
            return default or None
        value = str(raw).strip()
        if value == "":
            return None
        fields = value.split()
        if not (value in _CRON_MACROS or (len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields))):
            self._bad(key, repr(raw), 'is not a cron schedule: five fields such as "0 3 * * 0", a macro such as @weekly, or "" for none')
            return default
        return value

    def choice(self, key: str, default: str, accepted: tuple[str, ...]) -> str:
        value = self._raw(key) or default
        if value not in accepted:
            self._bad(key, repr(value), f"must be one of {', '.join(accepted)}")
            return default
        return value

    def s3(self, key: str, storage: str, has_secret_key: bool) -> Optional[S3]:
        raw = self._raw(key)
        access_key_id = self._raw("s3AccessKeyId")
        if storage != "s3":
            for given, name in ((raw, key), (access_key_id, "s3AccessKeyId"), (has_secret_key or None, "s3SecretAccessKey")):
                if given is not None:
                    self.problems.append(f"registry:{name} is set, but registry:storage is {storage}; set registry:storage s3 to use it")
            return None
        if raw is None:
            self._bad(key, "(unset)", "is required with registry:storage s3: an object with at least a bucket, such as {bucket: registry}")
            return None
        value = self._json_object(key, f"{{{', '.join(sorted(_S3_KEYS))}}}")
        if value is None:
            return None
        count = len(self.problems)
        self._known_keys(key, value, _S3_KEYS)
        bucket = value.get("bucket")
        if not isinstance(bucket, str) or not _BUCKET.match(bucket):
            self._bad(f"{key}.bucket", json.dumps(bucket), "is required: a bucket name of 3-63 lower-case letters, digits, '.' and '-'")
        endpoint = value.get("endpoint")
        if endpoint is not None:
            url = urllib.parse.urlsplit(endpoint) if isinstance(endpoint, str) else None
            if url is None or url.scheme not in ("http", "https") or not url.hostname:
                self._bad(f"{key}.endpoint", json.dumps(endpoint), "must be an http:// or https:// URL, such as https://minio.example.internal:9000")
        region = value.get("region", "us-east-1")
        if not isinstance(region, str) or not region or any(c.isspace() for c in region):
            self._bad(f"{key}.region", json.dumps(region), "must be a region name such as us-east-1")
        root = value.get("rootDirectory")
        if root is not None and (not isinstance(root, str) or not root.startswith("/") or any(c.isspace() for c in root)):
            self._bad(f"{key}.rootDirectory", json.dumps(root), "must be a path starting with '/', such as /registry")
        flags = {}
        for flag, default in (("forcePathStyle", endpoint is not None), ("redirect", False)):
            flags[flag] = value.get(flag, default)
            if not isinstance(flags[flag], bool):
                self._bad(f"{key}.{flag}", json.dumps(flags[flag]), "must be true or false")
        if (access_key_id is None) != (not has_secret_key):
            given, missing = ("s3AccessKeyId", "s3SecretAccessKey") if access_key_id else ("s3SecretAccessKey", "s3AccessKeyId")
            self.problems.append(
                f"registry:{given} is set without registry:{missing}; give both, or neither to use the pod's own identity"
            )
        if len(self.problems) > count:
            return None
        return S3(
            bucket=bucket, region=region, endpoint=endpoint, force_path_style=flags["forcePathStyle"],
            root_directory=root, redirect=flags["redirect"], access_key_id=access_key_id,
        )

    def _known_keys(self, where: str, value: dict, accepted: set) -> bool:
        """False (and one problem) when `value` has keys outside `accepted`."""
        unknown = sorted(set(value) - accepted)
        if unknown:
            self._bad(where, json.dumps(value), f"has unknown keys {unknown}; accepted: {sorted(accepted)}")
        return not unknown

    def _ssh_port(self, where: str, port: Any) -> bool:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            self._bad(f"{where}.port", json.dumps(port), "must be between 1 and 65535")
            return False
        return True

    def _ssh_user(self, where: str, user: Any) -> bool:
        if not isinstance(user, str) or not user or ":" in user or any(c.isspace() for c in user):
            self._bad(f"{where}.user", json.dumps(user), "must be a user name without ':' or whitespace")
            return False
        return True

    def _json_object(self, key: str, shape: str) -> Optional[dict]:
        raw = self._raw(key)
        if raw is None:
            return None
        try:
            value = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            value = raw
        if not isinstance(value, dict):
            self._bad(key, repr(raw), f"must be an object {shape} (give it as YAML/JSON, e.g. with `pulumi config set --path`)")
            return None
        return value

    def resources(self, key: str) -> dict:
        """The container's requests and limits, replacing the defaults as a whole."""
        value = self._json_object(key, "{requests?: {cpu?, memory?}, limits?: {cpu?, memory?}}")
        if value is None:
            return copy.deepcopy(DEFAULT_RESOURCES)
        count = len(self.problems)
        if not value or set(value) - {"requests", "limits"}:
            self._bad(key, json.dumps(value), "must have requests and/or limits, and nothing else")
        for part, amounts in value.items():
            if part not in ("requests", "limits"):
                continue
            if not isinstance(amounts, dict) or set(amounts) - set(_RESOURCE_NAMES):
                self._bad(f"{key}.{part}", json.dumps(amounts), f"must be an object of {', '.join(_RESOURCE_NAMES)}")
                continue
            for name, amount in amounts.items():
                pattern = _CPU if name == "cpu" else _QUANTITY
                if not isinstance(amount, str) or not pattern.match(amount):
                    example = "500m or 2" if name == "cpu" else "512Mi"
                    self._bad(f"{key}.{part}.{name}", json.dumps(amount), f"is not a Kubernetes quantity such as {example} (give it as a string)")
        return value if len(self.problems) == count else copy.deepcopy(DEFAULT_RESOURCES)

    def node_selector(self, key: str) -> dict:
        value = self._json_object(key, "of node label to value")
        if value is None:
            return {}
        count = len(self.problems)
        for label, wanted in value.items():
            prefix, _, name = label.rpartition("/")
            if not _LABEL_NAME.match(name) or (prefix and not _LABEL_PREFIX.match(prefix)):
                self._bad(f"{key}", json.dumps(label), "has a key that is not a label key, such as kubernetes.io/hostname or disktype")
            if not isinstance(wanted, str) or not _LABEL_VALUE.match(wanted):
                self._bad(f"{key}.{label}", json.dumps(wanted), "is not a label value: up to 63 letters, digits, '-', '_' and '.', as a string")
        return value if len(self.problems) == count else {}

    def tolerations(self, key: str) -> list:
        value = self._json_list(key, [])
        if value is None:
            return []
        count = len(self.problems)
        for i, item in enumerate(value):
            where = f"{key}[{i}]"
            if not isinstance(item, dict) or not item or set(item) - _TOLERATION_KEYS:
                self._bad(where, json.dumps(item), f"must be an object of {', '.join(sorted(_TOLERATION_KEYS))}")
                continue
            operator = item.get("operator", "Equal")
            if operator not in ("Equal", "Exists"):
                self._bad(f"{where}.operator", json.dumps(operator), "must be Equal or Exists")
            if operator == "Exists" and item.get("value"):
                self._bad(f"{where}.value", json.dumps(item["value"]), "must be empty with operator Exists")
            if "key" not in item and operator != "Exists":
                self._bad(where, json.dumps(item), "needs a key, or operator Exists to tolerate every taint")
            for field_ in ("key", "value"):
                if field_ in item and not isinstance(item[field_], str):
                    self._bad(f"{where}.{field_}", json.dumps(item[field_]), "must be a string")
            if item.get("effect", "") not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute"):
                self._bad(f"{where}.effect", json.dumps(item["effect"]), "must be NoSchedule, PreferNoSchedule or NoExecute")
            seconds = item.get("tolerationSeconds")
            if seconds is not None and (not isinstance(seconds, int) or isinstance(seconds, bool) or item.get("effect") != "NoExecute"):
                self._bad(f"{where}.tolerationSeconds", json.dumps(seconds), "must be a whole number of seconds, with effect NoExecute")
        return value if len(self.problems) == count else []

    def affinity(self, key: str) -> Optional[dict]:
        value = self._json_object(key, "{nodeAffinity?, podAffinity?, podAntiAffinity?}")
        if value is None:
            return None
        if not value or set(value) - _AFFINITY_KEYS or not all(isinstance(v, dict) for v in value.values()):
            self._bad(key, json.dumps(value), f"must be an object of {', '.join(sorted(_AFFINITY_KEYS))}, each an object as in a pod spec")
            return None
        return value

    def docker_config(self, key: str) -> None:
        """A .dockerconfigjson document; checked here, kept secret elsewhere (never printed)."""
        raw = self._raw(key)
        if raw is None:
            return
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, dict) or not isinstance(value.get("auths"), dict) or not value["auths"]:
            self.problems.append(
                f"registry:{key} (secret, not shown) must be a .dockerconfigjson document, "
                '{"auths": {"<registry>": {"auth": "<base64 user:password>"}}}, such as ~/.docker/config.json after a docker login'
            )

    def node_storage(self, storage: str, nodes: list) -> tuple[Optional[Node], Optional[str], bool]:
        """storageNode, storagePath and keepData: set only with storage node."""
        raw_node, raw_path, raw_keep = self._raw("storageNode"), self._raw("storagePath"), self._raw("keepData")
        if storage != "node":
            for key, given in (("storageNode", raw_node), ("storagePath", raw_path)):
                if given is not None:
                    self.problems.append(f"registry:{key} is set, but registry:storage is {storage}; set registry:storage node to use it")
            if raw_keep is not None and self.boolean("keepData", False):
                self._bad("keepData", "true", f"needs registry:storage node: with {storage} the data is "
                          + ("the claim, which destroy deletes with the namespace; back it up first" if storage == "pvc" else "in your bucket, which destroy never touches"))
            return None, None, False
        names = [node.name for node in nodes]
        node = next((n for n in nodes if n.name == raw_node), None)
        if raw_node is None or node is None:
            self._bad("storageNode", repr(raw_node) if raw_node else "(unset)",
                      f"must name the node entry (registry:nodes[].name, and the node's Kubernetes name) that keeps the data; entries: {names or 'none'}")
        path = raw_path or DEFAULT_STORAGE_PATH
        if (not _PATH.match(path) or "/../" in path + "/" or "/./" in path + "/"
                or not any(path.startswith(prefix) for prefix in STORAGE_PREFIXES)):
            self._bad("storagePath", repr(path), "must be an absolute folder of its own such as /var/lib/registry-data "
                      f"(letters, digits, . _ + -; not a system folder: below {', '.join(STORAGE_PREFIXES)})")
        keep = self.boolean("keepData", True)
        return node, path, keep

    def host_key_ok(self, key: str, value: Any) -> bool:
        """An OpenSSH public key line (`ssh-keyscan -t ed25519 HOST`, without the host name)."""
        fields = value.split() if isinstance(value, str) else []
        try:
            # The blob is SSH wire format: a length-prefixed key type, which must match the first field.
            blob = base64.b64decode(fields[1], validate=True)
            length = int.from_bytes(blob[:4], "big")
            assert fields[0] in _HOST_KEY_TYPES and blob[4:4 + length].decode() == fields[0] and len(blob) > 4 + length
        except Exception:
            self._bad(key, json.dumps(value), "must be the node's SSH host key as `ssh-keyscan -t ed25519 <host>` prints it "
                      "after the host name, such as \"ssh-ed25519 AAAAC3Nza...\"")
            return False
        return True

    def bastion(self, key: str, ssh_user: str) -> Optional[Bastion]:
        value = self._json_object(key, "{host, port?, user?, hostKey?}")
        if value is None:
            return None
        count = len(self.problems)
        self._known_keys(key, value, _BASTION_KEYS)
        host = value.get("host")
        if not isinstance(host, str) or not host or (not _is_ip(host) and hostname_problem(host.lower())):
            self._bad(f"{key}.host", json.dumps(host), "is required: the jump host's IP address or DNS name")
        port = value.get("port", 22)
        self._ssh_port(key, port)
        user = value.get("user", ssh_user)
        self._ssh_user(key, user)
        host_key = value.get("hostKey")
        if host_key is not None:
            self.host_key_ok(f"{key}.hostKey", host_key)
        if len(self.problems) > count:
            return None
        return Bastion(host=host, port=port, user=user, host_key=host_key)

    def image(self, key: str, default: str) -> str:
        value = self._raw(key) or default
        if any(c.isspace() for c in value):
            self._bad(key, repr(value), f"must be an image reference without spaces, such as {DEFAULT_IMAGE}")
            return default
        return value

    def quantity(self, key: str, default: str) -> str:
        value = self._raw(key) or default
        if not _QUANTITY.match(value) or float(re.match(r"[0-9.]+", value).group()) <= 0:
            self._bad(key, repr(value), "is not a positive Kubernetes quantity such as 10Gi or 500Mi")
            return default
        return value

    def _json_list(self, key: str, default: list) -> Optional[list]:
        raw = self._raw(key)
        if raw is None:
            return list(default)
        try:
            value = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            self._bad(key, repr(raw), "is not a list (give it as YAML/JSON, e.g. with `pulumi config set --path`)")
            return None
        if not isinstance(value, list):
            self._bad(key, json.dumps(value), "must be a list")
            return None
        return value

    def user_name(self, key: str, default: str) -> str:
        value = self._raw(key) or default
        if any(c.isspace() for c in value) or ":" in value:
            self._bad(key, repr(value), "must be a user name without ':' or whitespace")
            return default
        return value

    def users(self, key: str, default: list[str]) -> list[str]:
        value = self._json_list(key, default)
        if value is None:
            return list(default)
        if not value:
            self._bad(key, "[]", "must list at least one user")
            return list(default)
        seen: set[str] = set()
        for i, user in enumerate(value):
            if not isinstance(user, str) or not user:
                self._bad(f"{key}[{i}]", json.dumps(user), "must be a non-empty string")
            elif ":" in user or any(c.isspace() for c in user):
                self._bad(f"{key}[{i}]", repr(user), "must not contain ':' or whitespace (htpasswd uses ':' as separator)")
            elif user in seen:
                self._bad(f"{key}[{i}]", repr(user), "is listed twice; each user must be unique")
            else:
                seen.add(user)
        return [u for u in value if isinstance(u, str)]

    def label_list(self, key: str, default: list[str]) -> list[str]:
        value = self._json_list(key, default)
        if value is None:
            return list(default)
        seen: set[str] = set()
        for i, name in enumerate(value):
            if not isinstance(name, str) or len(name) > 63 or not _DNS_LABEL.match(name):
                self._bad(f"{key}[{i}]", json.dumps(name), "is not a namespace name: lower-case letters, digits and '-', at most 63")
            elif name in seen:
                self._bad(f"{key}[{i}]", repr(name), "is listed twice")
            else:
                seen.add(name)
        return [n for n in value if isinstance(n, str)]

    def nodes(self, key: str, ssh_user: str) -> list[Node]:
        value = self._json_list(key, [])
        if not value:
            return []
        nodes: list[Node] = []
        names: set[str] = set()
        hosts: set[str] = set()
        for i, entry in enumerate(value):
            where = f"{key}[{i}]"
            if not isinstance(entry, dict):
                self._bad(where, json.dumps(entry), "must be an object {name, host, port?, user?, runtime?}")
                continue
            known = self._known_keys(where, entry, _NODE_KEYS)
            name = entry.get("name")
            host = entry.get("host")
            ok = True
            if not isinstance(name, str) or not _NODE_NAME.match(name):
                self._bad(f"{where}.name", json.dumps(name), "must be a name of letters, digits, '.', '_' or '-'")
                ok = False
            elif name in names:
                self._bad(f"{where}.name", repr(name), "is used by another node; node names must be unique")
                ok = False
            if not isinstance(host, str) or not host:
                self._bad(f"{where}.host", json.dumps(host), "is required: the node's IP address or DNS name for SSH")
                ok = False
            elif not _is_ip(host) and hostname_problem(host.lower()):
                self._bad(f"{where}.host", repr(host), "is neither an IP address nor a DNS name")
                ok = False
            elif _machine(host) in hosts:
                self._bad(f"{where}.host", repr(host), "is the same machine as another node's host; node hosts must be unique")
                ok = False
            port = entry.get("port", 22)
            ok = self._ssh_port(where, port) and ok
            user = entry.get("user", ssh_user)
            ok = self._ssh_user(where, user) and ok
            runtime = entry.get("runtime", "auto")
            if runtime not in RUNTIMES:
                self._bad(f"{where}.runtime", json.dumps(runtime), f"must be one of {', '.join(RUNTIMES)}")
                ok = False
            host_key = entry.get("hostKey")
            if host_key is not None and not self.host_key_ok(f"{where}.hostKey", host_key):
                ok = False
            if isinstance(name, str):
                names.add(name)
            if isinstance(host, str) and host:
                hosts.add(_machine(host))
            if ok and known:
                nodes.append(Node(name=name, host=host, port=port, user=user, runtime=runtime, host_key=host_key))
        return nodes
