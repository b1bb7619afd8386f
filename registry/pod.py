"""The registry's pod, as pure functions of a PodConfig: its env, its spec,
the Deployment's strategy, the digest that rolls it. No resource is made here.

The pod runs two containers: nginx (registry/proxy.py), a sidecar that starts
first, serves TLS on the Service's port and decides who may write; and the
registry behind it, on the pod's loopback alone, without TLS or auth."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from . import maintenance, proxy
from .config.model import S3
from .names import (
    AUTH_SECRET,
    DATA_CLAIM,
    HOSTNAME_LABEL,
    IMAGE_PULL_SECRET,
    PROXY_CONFIG_MAP,
    S3_SECRET,
    TLS_SECRET,
    labels,
)

# The proxy always listens here; the Service maps `port` onto it. A fixed
# unprivileged port lets the pod run with every capability dropped.
CONTAINER_PORT = proxy.PROXY_PORT
# The registry, behind it on the pod's loopback.
REGISTRY_PORT = int(proxy.REGISTRY_ADDRESS.rsplit(":", 1)[1])
# The registry's debug server, with Prometheus metrics: a port of the pod's
# own, which the Service does not expose (so neither does the node port).
METRICS_PORT = 5001
METRICS_PATH = "/metrics"
CERTS_DIR = "/certs"
AUTH_DIR = "/auth"
DATA_DIR = "/var/lib/registry"
# The registry's storage-driver health check (on in the image's config.yml too,
# set here so that it holds whatever the image): once it fails this many times
# in a row, every request gets 503, the probes fail and the Service stops
# sending traffic to a pod that cannot reach its bucket.
HEALTH_INTERVAL = "10s"
HEALTH_THRESHOLD = "3"


@dataclass(frozen=True)
class PodConfig:
    """What the registry's pod is made of."""

    hostname: str
    image: str
    # nginx, in front of the registry.
    proxy_image: str
    # pvc, s3 or node; with s3, `s3`; with node, the folder and the node's name.
    storage: str
    s3: S3 | None = None
    storage_path: str | None = None
    storage_node: str | None = None
    metrics: bool = True
    resources: dict = field(default_factory=dict)
    node_selector: dict = field(default_factory=dict)
    tolerations: tuple = ()
    affinity: dict | None = None
    # Whether the registry's own image is pulled with the IMAGE_PULL_SECRET Secret.
    image_pull_secret: bool = False
    # Cron schedule of garbage collection; None: none.
    gc_schedule: str | None = None

    @property
    def collects(self) -> bool:
        """Collection runs on a volume of the pod's own; replicas on a bucket share none."""
        return bool(self.gc_schedule) and self.s3 is None


def registry_env(pod: PodConfig) -> list[dict]:
    """The distribution registry's own settings (REGISTRY_* override config.yml)."""
    return [
        # The registry:3 image's config.yml logs at debug level.
        {"name": "REGISTRY_LOG_LEVEL", "value": "info"},
        # The pod's loopback alone: only the proxy reaches it. No TLS and no auth
        # of its own: the proxy has checked both (the registry:3 image's
        # config.yml has neither).
        {"name": "REGISTRY_HTTP_ADDR", "value": proxy.REGISTRY_ADDRESS},
        *storage_env(pod),
        {"name": "REGISTRY_STORAGE_DELETE_ENABLED", "value": "true"},
        {
            # Signs upload state; a random one per pod would break resumed uploads.
            "name": "REGISTRY_HTTP_SECRET",
            "valueFrom": {"secretKeyRef": {"name": AUTH_SECRET, "key": "http-secret"}},
        },
        *metrics_env(pod),
    ]


def metrics_env(pod: PodConfig) -> list[dict]:
    if not pod.metrics:
        # The registry:3 image's own config.yml serves metrics on :5001; an
        # empty address starts no debug server (checked with the 3.1.1 binary).
        return [{"name": "REGISTRY_HTTP_DEBUG_ADDR", "value": ""}]
    return [
        {"name": "REGISTRY_HTTP_DEBUG_ADDR", "value": f":{METRICS_PORT}"},
        {"name": "REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED", "value": "true"},
        {"name": "REGISTRY_HTTP_DEBUG_PROMETHEUS_PATH", "value": METRICS_PATH},
    ]


def pod_annotations(pod: PodConfig) -> dict[str, str]:
    """Prometheus' usual Kubernetes discovery (kubernetes_sd_configs with the
    prometheus.io annotations) finds the pods by these."""
    if not pod.metrics:
        return {}
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT), "prometheus.io/path": METRICS_PATH}


def storage_env(pod: PodConfig) -> list[dict]:
    """Where the registry keeps its data: the claim's folder, or a bucket."""
    s3 = pod.s3
    if s3 is None:
        return [{"name": "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "value": DATA_DIR}]
    env = [
        # Replaces the image config's `filesystem` driver with `s3`.
        {"name": "REGISTRY_STORAGE", "value": "s3"},
        {"name": "REGISTRY_STORAGE_S3_BUCKET", "value": s3.bucket},
        {"name": "REGISTRY_STORAGE_S3_REGION", "value": s3.region},
        {"name": "REGISTRY_STORAGE_S3_FORCEPATHSTYLE", "value": str(s3.force_path_style).lower()},
    ]
    if s3.endpoint:
        env += [
            {"name": "REGISTRY_STORAGE_S3_REGIONENDPOINT", "value": s3.endpoint},
            {"name": "REGISTRY_STORAGE_S3_SECURE", "value": str(s3.endpoint.startswith("https://")).lower()},
        ]
    if s3.root_directory:
        env.append({"name": "REGISTRY_STORAGE_S3_ROOTDIRECTORY", "value": s3.root_directory})
    if s3.access_key_id:
        # From a Secret, never a plain value: a Deployment's env is readable by
        # anyone who may read Deployments.
        env += [
            {
                "name": "REGISTRY_STORAGE_S3_ACCESSKEY",
                "valueFrom": {"secretKeyRef": {"name": S3_SECRET, "key": "access-key-id"}},
            },
            {
                "name": "REGISTRY_STORAGE_S3_SECRETKEY",
                "valueFrom": {"secretKeyRef": {"name": S3_SECRET, "key": "secret-access-key"}},
            },
        ]
    # Off: each pod's in-memory cache of blob descriptors outlives a collection
    # (run by hand on s3), and a pod that still believes in a collected blob
    # accepts a re-push without it, whose pull then fails (tests/e2e/test_s3.py).
    env.append({"name": "REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "value": ""})
    if not s3.redirect:
        # Blobs flow through the registry: nodes never need to reach the bucket.
        env.append({"name": "REGISTRY_STORAGE_REDIRECT_DISABLE", "value": "true"})
    env += [
        {"name": "REGISTRY_HEALTH_STORAGEDRIVER_ENABLED", "value": "true"},
        {"name": "REGISTRY_HEALTH_STORAGEDRIVER_INTERVAL", "value": HEALTH_INTERVAL},
        {"name": "REGISTRY_HEALTH_STORAGEDRIVER_THRESHOLD", "value": HEALTH_THRESHOLD},
    ]
    return env


def realm(pod: PodConfig) -> str:
    """What a client is asked to log in to: the registry's own realm before the proxy."""
    return f"{pod.hostname} registry"


def proxy_config(pod: PodConfig) -> str:
    """The proxy's nginx.conf, as the pod mounts it."""
    return proxy.nginx_config(realm(pod), paths=proxy.ProxyPaths(certs_dir=CERTS_DIR, auth_dir=AUTH_DIR))


def pod_spec(pod: PodConfig) -> dict:
    spec = base_pod_spec(pod)
    if pod.collects:
        # Serves read-only while a garbage collection runs (registry/maintenance.py).
        (container,) = spec["containers"]
        container["command"] = maintenance.serve_command()
        container["env"] += [maintenance.grace_env(), maintenance.drain_env()]
        container["readinessProbe"] = maintenance.mode_readiness_probe(DATA_DIR, REGISTRY_PORT)
    return spec


def base_pod_spec(pod: PodConfig) -> dict:
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # A sidecar (Kubernetes 1.29 and later): it starts before the registry, and a
        # collection's Job ends when its own container does, the proxy with it.
        "initContainers": [proxy_container(pod)],
        "containers": [registry_container(pod)],
        "volumes": [
            {"name": "tls", "secret": {"secretName": TLS_SECRET, "defaultMode": 0o440}},
            {
                "name": "auth",
                "secret": {
                    "secretName": AUTH_SECRET,
                    "items": [
                        {"key": proxy.EVERYONE_FILE, "path": proxy.EVERYONE_FILE},
                        {"key": proxy.PUSHERS_FILE, "path": proxy.PUSHERS_FILE},
                    ],
                    "defaultMode": 0o440,
                },
            },
            {"name": "proxy-config", "configMap": {"name": PROXY_CONFIG_MAP, "defaultMode": 0o444}},
            *data_volumes(pod),
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            # nginx's own: request bodies are never buffered, so little lands here.
            {"name": "proxy-tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
        **scheduling(pod),
        # The registry's own image from a private mirror (registry:imagePullSecret).
        **({"imagePullSecrets": [{"name": IMAGE_PULL_SECRET}]} if pod.image_pull_secret else {}),
    }


CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
}
# The proxy's requests and limits: nginx streams, it keeps no layer in memory.
PROXY_RESOURCES = {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}


def proxy_container(pod: PodConfig) -> dict:
    return {
        "name": "proxy",
        "image": pod.proxy_image,
        "restartPolicy": "Always",
        "command": proxy.proxy_command(),
        "ports": [{"name": "registry", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "volumeMounts": [
            {"name": "tls", "mountPath": CERTS_DIR, "readOnly": True},
            {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True},
            {"name": "proxy-config", "mountPath": proxy.CONFIG_DIR, "readOnly": True},
            {"name": "proxy-tmp", "mountPath": "/tmp"},
        ],
        # Alive while it accepts connections; whether the registry answers behind it is
        # the registry container's probe.
        "startupProbe": {"tcpSocket": {"port": CONTAINER_PORT}, "periodSeconds": 1, "failureThreshold": 30},
        "livenessProbe": {"tcpSocket": {"port": CONTAINER_PORT}, "periodSeconds": 20, "failureThreshold": 3},
        "resources": PROXY_RESOURCES,
        "securityContext": CONTAINER_SECURITY,
    }


def registry_container(pod: PodConfig) -> dict:
    # Through the proxy (kubelet reaches the pod's address, not its loopback): the
    # registry's answer to / shows both serve.
    probe = {"httpGet": {"path": "/", "port": CONTAINER_PORT, "scheme": "HTTPS"}}
    return {
        "name": "registry",
        "image": pod.image,
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}] if pod.metrics else [],
        "env": registry_env(pod),
        "volumeMounts": [
            *([{"name": "data", "mountPath": DATA_DIR}] if pod.s3 is None else []),
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**probe, "initialDelaySeconds": 10, "periodSeconds": 20, "failureThreshold": 3},
        "resources": pod.resources,
        "securityContext": CONTAINER_SECURITY,
    }


def scheduling(pod: PodConfig) -> dict:
    """Scheduling as the user gives it (registry:nodeSelector, tolerations, affinity);
    storage node pins the pod to the node that holds its folder."""
    selector = node_selector(pod)
    spec: dict = {
        **({"nodeSelector": selector} if selector else {}),
        **({"tolerations": list(pod.tolerations)} if pod.tolerations else {}),
        **({"affinity": pod.affinity} if pod.affinity else {}),
    }
    if pod.s3 is not None:
        # Replicas on different nodes, where there are enough: a node drain
        # then takes one of them, not all.
        spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": HOSTNAME_LABEL,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": labels(pod.hostname)},
            }
        ]
    return spec


def data_volumes(pod: PodConfig) -> list[dict]:
    if pod.storage == "pvc":
        return [{"name": "data", "persistentVolumeClaim": {"claimName": DATA_CLAIM}}]
    if pod.storage == "node":
        # Prepared over SSH (registry/node_storage.py) before the pod starts: it must exist.
        return [{"name": "data", "hostPath": {"path": pod.storage_path, "type": "Directory"}}]
    return []


def node_selector(pod: PodConfig) -> dict[str, str]:
    pinned = {HOSTNAME_LABEL: pod.storage_node} if pod.storage_node else {}
    return {**pod.node_selector, **pinned}


def deployment_strategy(pod: PodConfig) -> dict:
    if pod.s3 is None:
        # One ReadWriteOnce volume, or one node's folder: the old pod must let go before the new one starts.
        return {"type": "Recreate"}
    # Shared storage: a new pod is Ready before an old one goes, so pulls never stop.
    return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def config_digest(htpasswd: str, cert_pem: str, *more: str) -> str:
    """Changes whenever the pod's mounted credentials or certificate change, or
    what else it reads only at start (`more`: the S3 keys, read into its env; the
    proxy's config).

    Secret volumes update in place, but nginx reads the certificate only at start,
    and the htpasswd files reach a running pod only after kubelet's next sync (up to
    a minute or more): the pods roll, so that once the Deployment has rolled out,
    every pod serves the new passwords (the pull secrets change only then).
    """
    return hashlib.sha256("\0".join((htpasswd, cert_pem, *more)).encode()).hexdigest()
