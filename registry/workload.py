"""The registry in the cluster: namespace, secrets, storage, Deployment, Service."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from . import maintenance
from .names import (
    AUTH_SECRET,
    CA_GENERATION_LABEL,
    CONFIG_DIGEST_ANNOTATION,
    CRON_JOB_NAME,
    DATA_CLAIM,
    DEPLOYMENT_NAME,
    DISRUPTION_BUDGET_NAME,
    IMAGE_PULL_SECRET,
    PROXY_CONFIG_MAP,
    S3_SECRET,
    SERVICE_NAME,
    TLS_SECRET,
    labels,
    owned_labels,
)
from .pod import PodConfig, config_digest, deployment_strategy, pod_annotations, pod_spec, proxy_config
from .proxy import EVERYONE_FILE, PUSHERS_FILE


@dataclass
class ServingCertificate:
    """What the pods serve with and clients trust."""

    # Every CA certificate clients trust (caGeneration N and N-1), one PEM file.
    ca_pem: pulumi.Input[str]
    cert_pem: pulumi.Input[str]
    key_pem: pulumi.Input[str]


@dataclass
class WorkloadArgs:
    namespace: str
    pod: PodConfig
    certificate: ServingCertificate
    # Everyone's htpasswd lines (reads), and the pushers' alone (writes): registry/proxy.py.
    htpasswd: pulumi.Input[str]
    pushers: pulumi.Input[str]
    http_secret: pulumi.Input[str]
    # The Service.
    port: int = 5000
    node_port: int = 30500
    cluster_ip: str | None = None
    replicas: int = 1
    # storage pvc: the claim.
    storage_size: str = "10Gi"
    storage_class: str | None = None
    ca_generation: int = 1
    # storage s3 with keys of the user's: the key pair (the id is in pod.s3).
    s3_secret_access_key: pulumi.Input[str] | None = None
    # A .dockerconfigjson for the registry's own image (pod.image_pull_secret).
    image_pull_secret: pulumi.Input[str] | None = None
    # Makes the nodes trust the CA and resolve the Service's clusterIP: the
    # pods serve only once what it returns is done, on the first `up` and on
    # every CA rotation (caGeneration).
    prepare_nodes: Callable[[k8s.core.v1.Service], Sequence[pulumi.Resource]] = field(default=lambda service: [])


def pod_security_labels(pod: PodConfig) -> dict[str, str]:
    """The Pod Security level the registry's namespace enforces: restricted, which its
    pods meet (non-root, no capability, RuntimeDefault seccomp, no host volume); with
    storage node, privileged, the only level that admits the folder's hostPath volume."""
    level = "privileged" if pod.storage == "node" else "restricted"
    return {f"pod-security.kubernetes.io/{mode}": level for mode in ("enforce", "warn", "audit")}


class Workload(pulumi.ComponentResource):
    namespace: k8s.core.v1.Namespace
    service: k8s.core.v1.Service
    # Done once its pods serve what this run gave them (pulumi-kubernetes awaits the rollout).
    deployment: k8s.apps.v1.Deployment
    cluster_ip: pulumi.Output[str]

    # Parts of Kubernetes objects are plain data (typed Any), as the API documents them: the SDK's
    # typed dicts use Python names; tests/unit/test_manifests.py checks each against the API's schema.
    def __init__(self, name: str, args: WorkloadArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("registry:index:Workload", name, None, opts)
        self._name, self._args = name, args
        self._labels = labels(args.pod.hostname)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": args.namespace,
                "labels": {**owned_labels(args.pod.hostname), **pod_security_labels(args.pod)},
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Fixed names are referenced by the pod spec; replacing one must free
        # the name before the new object takes it. (Data changes update a
        # Secret in place: Pulumi.yaml sets kubernetes:enableSecretMutable.)
        self._in_namespace = pulumi.ResourceOptions(
            parent=self, depends_on=[self.namespace], delete_before_replace=True
        )

        before_pods, s3_keys = self._secrets()
        self.service = self._service(name, args, self._labels)
        self.cluster_ip = self.service.spec.cluster_ip
        # The nodes trust the CA before any pod serves a certificate it signed.
        nodes_ready = list(args.prepare_nodes(self.service))
        tls_secret = self._tls_secret(nodes_ready)
        self.deployment = self._deployment(s3_keys, depends_on=[tls_secret, *before_pods, *nodes_ready])
        if args.replicas > 1:
            self._disruption_budget()
        if args.pod.collects:
            self._garbage_collection(depends_on=[tls_secret, *before_pods])
        self.register_outputs({"clusterIp": self.cluster_ip})

    def _secret(
        self,
        suffix: str,
        secret_name: str,
        data: dict,
        kind: str = "Opaque",
        extra_labels: dict | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> k8s.core.v1.Secret:
        return k8s.core.v1.Secret(
            f"{self._name}-{suffix}",
            metadata={
                "name": secret_name,
                "namespace": self._args.namespace,
                "labels": {**self._labels, **(extra_labels or {})},
            },
            type=kind,
            string_data=data,
            opts=opts or self._in_namespace,
        )

    def _secrets(self) -> tuple[list[pulumi.Resource], list[pulumi.Input[str]]]:
        """What the pods need before they start: the passwords, the claim or the bucket's keys,
        the image's pull secret; and the S3 key pair, whose digest rolls the pods."""
        args, pod = self._args, self._args.pod
        auth = {EVERYONE_FILE: args.htpasswd, PUSHERS_FILE: args.pushers, "http-secret": args.http_secret}
        before_pods: list[pulumi.Resource] = [self._secret("auth", AUTH_SECRET, auth), self._proxy_config()]
        s3_keys: list[pulumi.Input[str]] = []
        if pod.storage == "pvc":
            before_pods.append(self._claim(self._name, args, self._labels))
        elif pod.s3 is not None and pod.s3.access_key_id and args.s3_secret_access_key is not None:
            s3_keys = [pod.s3.access_key_id, args.s3_secret_access_key]
            keys = {"access-key-id": s3_keys[0], "secret-access-key": s3_keys[1]}
            before_pods.append(self._secret("s3", S3_SECRET, keys))
        if args.image_pull_secret is not None:
            pull = {".dockerconfigjson": args.image_pull_secret}
            kind = "kubernetes.io/dockerconfigjson"
            before_pods.append(self._secret("image-pull", IMAGE_PULL_SECRET, pull, kind=kind))
        return before_pods, s3_keys

    def _proxy_config(self) -> k8s.core.v1.ConfigMap:
        return k8s.core.v1.ConfigMap(
            f"{self._name}-proxy-config",
            metadata={"name": PROXY_CONFIG_MAP, "namespace": self._args.namespace, "labels": self._labels},
            data={"nginx.conf": proxy_config(self._args.pod)},
            opts=self._in_namespace,
        )

    def _tls_secret(self, nodes_ready: list[pulumi.Resource]) -> k8s.core.v1.Secret:
        certificate = self._args.certificate
        return self._secret(
            "tls",
            TLS_SECRET,
            {"tls.crt": certificate.cert_pem, "tls.key": certificate.key_pem, "ca.crt": certificate.ca_pem},
            kind="kubernetes.io/tls",
            extra_labels={CA_GENERATION_LABEL: str(self._args.ca_generation)},
            opts=pulumi.ResourceOptions.merge(self._in_namespace, pulumi.ResourceOptions(depends_on=nodes_ready)),
        )

    def _deployment(
        self, s3_keys: list[pulumi.Input[str]], depends_on: list[pulumi.Resource]
    ) -> k8s.apps.v1.Deployment:
        args, pod = self._args, self._args.pod
        # A digest reveals nothing of what it hashes (bcrypt hashes of ~190-bit
        # passwords, a public certificate, S3 keys), so it stays readable in diffs.
        digest = pulumi.Output.unsecret(
            pulumi.Output.all(
                args.htpasswd, args.certificate.cert_pem, *s3_keys, args.pushers, proxy_config(pod)
            ).apply(lambda v: config_digest(*v))
        )
        template = {
            "metadata": {
                "labels": self._labels,
                "annotations": {**pod_annotations(pod), CONFIG_DIGEST_ANNOTATION: digest},
            },
            "spec": pod_spec(pod),
        }
        spec: Any = {
            "replicas": args.replicas,
            "strategy": deployment_strategy(pod),
            "selector": {"matchLabels": self._labels},
            "template": template,
        }
        return k8s.apps.v1.Deployment(
            f"{self._name}-deployment",
            metadata={"name": DEPLOYMENT_NAME, "namespace": args.namespace, "labels": self._labels},
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )

    def _disruption_budget(self) -> None:
        # A drain or an upgrade of the nodes never takes the last serving pod.
        # (With one replica it would block every drain, so there is none.)
        spec: Any = {"minAvailable": 1, "selector": {"matchLabels": self._labels}}
        k8s.policy.v1.PodDisruptionBudget(
            f"{self._name}-disruption-budget",
            metadata={"name": DISRUPTION_BUDGET_NAME, "namespace": self._args.namespace, "labels": self._labels},
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace]),
        )

    def _garbage_collection(self, depends_on: list[pulumi.Resource]) -> None:
        pod = self._args.pod
        spec: Any = maintenance.cron_job_spec(pod.gc_schedule, pod_spec(pod), self._labels)
        k8s.batch.v1.CronJob(
            f"{self._name}-garbage-collection",
            metadata={"name": CRON_JOB_NAME, "namespace": self._args.namespace, "labels": self._labels},
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )

    def _service(self, name: str, args: WorkloadArgs, app_labels: dict[str, str]) -> k8s.core.v1.Service:
        spec: Any = {
            "type": "NodePort",
            "selector": app_labels,
            "ports": [
                {
                    "name": "registry",
                    "protocol": "TCP",
                    "port": args.port,
                    "targetPort": "registry",
                    "nodePort": args.node_port,
                }
            ],
        }
        if args.cluster_ip:
            spec["clusterIP"] = args.cluster_ip
        return k8s.core.v1.Service(
            f"{name}-service",
            metadata={
                "name": SERVICE_NAME,
                "namespace": args.namespace,
                "labels": owned_labels(args.pod.hostname),
                "annotations": {"pulumi.com/skipAwait": "true"},
            },
            spec=spec,
            # Not awaited: its endpoints are the pods, which roll out only after
            # the nodes (which need this Service's clusterIP) trust the CA.
            # The Deployment's own await proves the pods ready.
            # clusterIP is immutable: a new one replaces the Service, whose
            # fixed name the old one must free first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace], delete_before_replace=True),
        )

    def _claim(self, name: str, args: WorkloadArgs, app_labels: dict[str, str]) -> k8s.core.v1.PersistentVolumeClaim:
        claim_spec: Any = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": args.storage_size}},
        }
        if args.storage_class:
            claim_spec["storageClassName"] = args.storage_class
        return k8s.core.v1.PersistentVolumeClaim(
            f"{name}-data",
            metadata={
                "name": DATA_CLAIM,
                "namespace": args.namespace,
                "labels": app_labels,
                # A claim bound by WaitForFirstConsumer stays Pending until the
                # Deployment exists; do not wait for it here.
                "annotations": {"pulumi.com/skipAwait": "true"},
            },
            spec=claim_spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace]),
        )
