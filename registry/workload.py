"""The registry in the cluster: namespace, secrets, storage, Deployment, Service."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from . import maintenance
from .certificates import SERVICE_NAME
from .node_trust import stack_identity
from .settings import Settings

# The container always listens here; the Service maps `port` onto it. A fixed
# unprivileged port lets the pod run with every capability dropped.
CONTAINER_PORT = 5000
# The registry's debug server, with Prometheus metrics: a port of the pod's
# own, which the Service does not expose (so neither does the node port).
METRICS_PORT = 5001
METRICS_PATH = "/metrics"
CERTS_DIR = "/certs"
AUTH_DIR = "/auth"
DATA_DIR = "/var/lib/registry"
TLS_SECRET = "registry-tls"
# On the TLS Secret: the CA generation the pods serve with, which the next run
# reads (registry/preflight.py) to refuse a caGeneration that skips or goes down.
CA_GENERATION_LABEL = "registry.pulumi.com/ca-generation"
AUTH_SECRET = "registry-auth"
S3_SECRET = "registry-s3"
IMAGE_PULL_SECRET = "registry-image-pull"
DATA_CLAIM = "registry-data"
CONFIG_DIGEST_ANNOTATION = "registry.pulumi.com/config-digest"
# The registry's storage-driver health check (on in the image's config.yml too,
# set here so that it holds whatever the image): once it fails this many times
# in a row, every request gets 503, the probes fail and the Service stops
# sending traffic to a pod that cannot reach its bucket.
HEALTH_INTERVAL = "10s"
HEALTH_THRESHOLD = "3"


# The label kubelet sets to the node's name; storage node pins the pod by it.
HOSTNAME_LABEL = "kubernetes.io/hostname"


def labels(settings: Settings) -> dict[str, str]:
    return {"app.kubernetes.io/name": "registry", "app.kubernetes.io/instance": settings.hostname}


# Which stack made the registry's namespace and Service: a later up of the same
# stack knows them as its own whatever else changed (the hostname, say), and
# another stack's are someone else's (registry/preflight.py). Not in selectors,
# which cannot change.
STACK_LABEL = "registry.pulumi.com/stack"


def stack_label_value() -> str:
    """organization.project.stack, or a digest of it where that is no label value."""
    value = stack_identity().replace("/", ".")
    if len(value) <= 63 and re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", value):
        return value
    return "sha256-" + hashlib.sha256(value.encode()).hexdigest()[:32]


def owned_labels(settings: Settings) -> dict[str, str]:
    return {**labels(settings), STACK_LABEL: stack_label_value()}


def registry_env(settings: Settings) -> list[dict]:
    """The distribution registry's own settings (REGISTRY_* override config.yml)."""
    return [
        # The registry:3 image's config.yml logs at debug level.
        {"name": "REGISTRY_LOG_LEVEL", "value": "info"},
        {"name": "REGISTRY_HTTP_ADDR", "value": f":{CONTAINER_PORT}"},
        {"name": "REGISTRY_HTTP_TLS_CERTIFICATE", "value": f"{CERTS_DIR}/tls.crt"},
        {"name": "REGISTRY_HTTP_TLS_KEY", "value": f"{CERTS_DIR}/tls.key"},
        {"name": "REGISTRY_AUTH", "value": "htpasswd"},
        {"name": "REGISTRY_AUTH_HTPASSWD_REALM", "value": f"{settings.hostname} registry"},
        {"name": "REGISTRY_AUTH_HTPASSWD_PATH", "value": f"{AUTH_DIR}/htpasswd"},
        *storage_env(settings),
        {"name": "REGISTRY_STORAGE_DELETE_ENABLED", "value": "true"},
        {
            # Signs upload state; a random one per pod would break resumed uploads.
            "name": "REGISTRY_HTTP_SECRET",
            "valueFrom": {"secretKeyRef": {"name": AUTH_SECRET, "key": "http-secret"}},
        },
        *metrics_env(settings),
    ]


def metrics_env(settings: Settings) -> list[dict]:
    if not settings.metrics:
        # The registry:3 image's own config.yml serves metrics on :5001; an
        # empty address starts no debug server (checked with the 3.1.1 binary).
        return [{"name": "REGISTRY_HTTP_DEBUG_ADDR", "value": ""}]
    return [
        {"name": "REGISTRY_HTTP_DEBUG_ADDR", "value": f":{METRICS_PORT}"},
        {"name": "REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED", "value": "true"},
        {"name": "REGISTRY_HTTP_DEBUG_PROMETHEUS_PATH", "value": METRICS_PATH},
    ]


def pod_annotations(settings: Settings) -> dict[str, str]:
    """Prometheus' usual Kubernetes discovery (kubernetes_sd_configs with the
    prometheus.io annotations) finds the pods by these."""
    if not settings.metrics:
        return {}
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT), "prometheus.io/path": METRICS_PATH}


def storage_env(settings: Settings) -> list[dict]:
    """Where the registry keeps its data: the claim's folder, or a bucket."""
    s3 = settings.s3
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
            {"name": "REGISTRY_STORAGE_S3_ACCESSKEY", "valueFrom": {"secretKeyRef": {"name": S3_SECRET, "key": "access-key-id"}}},
            {"name": "REGISTRY_STORAGE_S3_SECRETKEY", "valueFrom": {"secretKeyRef": {"name": S3_SECRET, "key": "secret-access-key"}}},
        ]
    # Off: each pod's in-memory cache of blob descriptors outlives a collection
    # (run by hand on s3), and a pod that still believes in a collected blob
    # accepts a re-push without it, whose pull then fails (tests/test_s3.py).
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


def pod_spec(settings: Settings) -> dict:
    spec = base_pod_spec(settings)
    if maintenance.enabled(settings):
        # Serves read-only while a garbage collection runs (registry/maintenance.py).
        (container,) = spec["containers"]
        container["command"] = maintenance.serve_command()
        container["env"] += [maintenance.grace_env(), maintenance.drain_env()]
        container["readinessProbe"] = maintenance.mode_readiness_probe(DATA_DIR, CONTAINER_PORT)
    return spec


def base_pod_spec(settings: Settings) -> dict:
    probe = {"httpGet": {"path": "/", "port": "registry", "scheme": "HTTPS"}}
    selector = node_selector(settings)
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "registry",
                "image": settings.image,
                "ports": [
                    {"name": "registry", "containerPort": CONTAINER_PORT, "protocol": "TCP"},
                    *([{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}] if settings.metrics else []),
                ],
                "env": registry_env(settings),
                "volumeMounts": [
                    {"name": "tls", "mountPath": CERTS_DIR, "readOnly": True},
                    {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True},
                    *([{"name": "data", "mountPath": DATA_DIR}] if settings.s3 is None else []),
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
                "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
                "livenessProbe": {**probe, "initialDelaySeconds": 10, "periodSeconds": 20, "failureThreshold": 3},
                "resources": settings.resources,
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "privileged": False,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
        "volumes": [
            {"name": "tls", "secret": {"secretName": TLS_SECRET, "defaultMode": 0o440}},
            {
                "name": "auth",
                "secret": {
                    "secretName": AUTH_SECRET,
                    "items": [{"key": "htpasswd", "path": "htpasswd"}],
                    "defaultMode": 0o440,
                },
            },
            *data_volumes(settings),
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
        # Scheduling as the user gives it (registry:nodeSelector, tolerations, affinity);
        # storage node pins the pod to the node that holds its folder.
        **({"nodeSelector": selector} if selector else {}),
        **({"tolerations": list(settings.tolerations)} if settings.tolerations else {}),
        **({"affinity": settings.affinity} if settings.affinity else {}),
        # The registry's own image from a private mirror (registry:imagePullSecret).
        **({"imagePullSecrets": [{"name": IMAGE_PULL_SECRET}]} if settings.image_pull_secret is not None else {}),
        # Replicas on different nodes, where there are enough: a node drain
        # then takes one of them, not all.
        **({"topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": HOSTNAME_LABEL,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": labels(settings)},
        }]} if settings.s3 is not None else {}),
    }


def data_volumes(settings: Settings) -> list[dict]:
    if settings.storage == "pvc":
        return [{"name": "data", "persistentVolumeClaim": {"claimName": DATA_CLAIM}}]
    if settings.storage == "node":
        # Prepared over SSH (registry/node_storage.py) before the pod starts: it must exist.
        return [{"name": "data", "hostPath": {"path": settings.storage_path, "type": "Directory"}}]
    return []


def node_selector(settings: Settings) -> dict[str, str]:
    pinned = {HOSTNAME_LABEL: settings.storage_node.name} if settings.storage_node else {}
    return {**settings.node_selector, **pinned}


def deployment_strategy(settings: Settings) -> dict:
    if settings.s3 is None:
        # One ReadWriteOnce volume, or one node's folder: the old pod must let go before the new one starts.
        return {"type": "Recreate"}
    # Shared storage: a new pod is Ready before an old one goes, so pulls never stop.
    return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def config_digest(htpasswd: str, cert_pem: str, *more: str) -> str:
    """Changes whenever the pod's mounted credentials or certificate change, or
    what else it reads only at start (`more`: the S3 keys, read into its env).

    Secret volumes update in place, but the registry reads htpasswd and the
    certificate only at start, so the pods must roll.
    """
    return hashlib.sha256("\0".join((htpasswd, cert_pem, *more)).encode()).hexdigest()


@dataclass
class WorkloadArgs:
    settings: Settings
    ca_cert_pem: pulumi.Input[str]
    server_cert_pem: pulumi.Input[str]
    server_key_pem: pulumi.Input[str]
    htpasswd: pulumi.Input[str]
    http_secret: pulumi.Input[str]
    # What must exist before anything is created: the pull secrets in the
    # user's namespaces, so that a missing namespace stops `up` first.
    after: Sequence[pulumi.Resource] = ()


class Workload(pulumi.ComponentResource):
    namespace: k8s.core.v1.Namespace
    service: k8s.core.v1.Service
    cluster_ip: pulumi.Output[str]

    def __init__(self, name: str, args: WorkloadArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("registry:index:Workload", name, None, opts)
        settings = args.settings
        ns = settings.namespace
        app_labels = labels(settings)

        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": ns, "labels": owned_labels(settings)},
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        # Fixed names are referenced by the pod spec; replacing one must free
        # the name before the new object takes it. (Data changes update a
        # Secret in place: Pulumi.yaml sets kubernetes:enableSecretMutable.)
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace], delete_before_replace=True)

        auth_secret = k8s.core.v1.Secret(
            f"{name}-auth",
            metadata={"name": AUTH_SECRET, "namespace": ns, "labels": app_labels},
            type="Opaque",
            string_data={"htpasswd": args.htpasswd, "http-secret": args.http_secret},
            opts=in_ns,
        )
        self._before_pods: list[pulumi.Resource] = [auth_secret]
        self._s3_keys: list[pulumi.Input[str]] = []
        if settings.storage == "pvc":
            self._before_pods.append(self._claim(name, settings, app_labels))
        elif settings.s3 is not None and settings.s3.access_key_id:
            self._s3_keys = [settings.s3.access_key_id, settings.s3_secret_access_key]
            self._before_pods.append(k8s.core.v1.Secret(
                f"{name}-s3",
                metadata={"name": S3_SECRET, "namespace": ns, "labels": app_labels},
                type="Opaque",
                string_data={"access-key-id": self._s3_keys[0], "secret-access-key": self._s3_keys[1]},
                opts=in_ns,
            ))

        if settings.image_pull_secret is not None:
            self._before_pods.append(k8s.core.v1.Secret(
                f"{name}-image-pull",
                metadata={"name": IMAGE_PULL_SECRET, "namespace": ns, "labels": app_labels},
                type="kubernetes.io/dockerconfigjson",
                string_data={".dockerconfigjson": settings.image_pull_secret},
                opts=in_ns,
            ))

        service_spec: dict = {
            "type": "NodePort",
            "selector": app_labels,
            "ports": [
                {
                    "name": "registry",
                    "protocol": "TCP",
                    "port": settings.port,
                    "targetPort": "registry",
                    "nodePort": settings.node_port,
                }
            ],
        }
        if settings.cluster_ip:
            service_spec["clusterIP"] = settings.cluster_ip
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={
                "name": SERVICE_NAME, "namespace": ns, "labels": owned_labels(settings),
                "annotations": {"pulumi.com/skipAwait": "true"},
            },
            spec=service_spec,
            # Not awaited: its endpoints are the pods, which roll out only after
            # the nodes (which need this Service's clusterIP) trust the CA.
            # The Deployment's own await proves the pods ready.
            # clusterIP is immutable: a new one replaces the Service, whose
            # fixed name the old one must free first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace], delete_before_replace=True),
        )
        self.cluster_ip = self.service.spec.cluster_ip
        self._name, self._settings, self._labels, self._args, self._in_ns = name, settings, app_labels, args, in_ns

    def roll_out(self, after: Sequence[pulumi.Resource] = ()) -> None:
        """The server certificate's Secret, the Deployment and its disruption
        budget, once everything in `after` is done.

        `after` is the node commands: a node trusts a new CA before any pod
        serves a certificate it signed (caGeneration), on the first `up` and
        on every rotation.
        """
        name, settings, app_labels, args = self._name, self._settings, self._labels, self._args
        ns = settings.namespace
        tls_secret = k8s.core.v1.Secret(
            f"{name}-tls",
            metadata={"name": TLS_SECRET, "namespace": ns,
                      "labels": {**app_labels, CA_GENERATION_LABEL: str(settings.ca_generation)}},
            type="kubernetes.io/tls",
            string_data={"tls.crt": args.server_cert_pem, "tls.key": args.server_key_pem, "ca.crt": args.ca_cert_pem},
            opts=pulumi.ResourceOptions.merge(self._in_ns, pulumi.ResourceOptions(depends_on=list(after))),
        )
        # A digest reveals nothing of what it hashes (bcrypt hashes of ~190-bit
        # passwords, a public certificate, S3 keys), so it stays readable in diffs.
        digest = pulumi.Output.unsecret(
            pulumi.Output.all(args.htpasswd, args.server_cert_pem, *self._s3_keys).apply(lambda v: config_digest(*v))
        )
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={"name": "registry", "namespace": ns, "labels": app_labels},
            spec={
                "replicas": settings.replicas,
                "strategy": deployment_strategy(settings),
                "selector": {"matchLabels": app_labels},
                "template": {
                    "metadata": {
                        "labels": app_labels,
                        "annotations": {**pod_annotations(settings), CONFIG_DIGEST_ANNOTATION: digest},
                    },
                    "spec": pod_spec(settings),
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[tls_secret, *self._before_pods, *after]),
        )
        if settings.replicas > 1:
            # A drain or an upgrade of the nodes never takes the last serving pod.
            # (With one replica it would block every drain, so there is none.)
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-disruption-budget",
                metadata={"name": "registry", "namespace": ns, "labels": app_labels},
                spec={"minAvailable": 1, "selector": {"matchLabels": app_labels}},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace]),
            )

        if maintenance.enabled(settings):
            k8s.batch.v1.CronJob(
                f"{name}-garbage-collection",
                metadata={"name": "registry-gc", "namespace": ns, "labels": app_labels},
                spec=maintenance.cron_job_spec(settings, pod_spec(settings), app_labels),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[tls_secret, *self._before_pods]),
            )

        self.register_outputs({"clusterIp": self.cluster_ip})

    def _claim(self, name: str, settings: Settings, app_labels: dict[str, str]) -> k8s.core.v1.PersistentVolumeClaim:
        claim_spec: dict = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": settings.storage_size}},
        }
        if settings.storage_class:
            claim_spec["storageClassName"] = settings.storage_class
        return k8s.core.v1.PersistentVolumeClaim(
            f"{name}-data",
            metadata={
                "name": DATA_CLAIM,
                "namespace": settings.namespace,
                "labels": app_labels,
                # A claim bound by WaitForFirstConsumer stays Pending until the
                # Deployment exists; do not wait for it here.
                "annotations": {"pulumi.com/skipAwait": "true"},
            },
            spec=claim_spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace]),
        )
