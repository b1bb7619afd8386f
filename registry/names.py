"""The names of the objects the program makes in the cluster, and the labels it
marks them with: one place, read by the components that make them and by
registry/cluster/checks.py, which looks for them before anything is made."""

from __future__ import annotations

import hashlib
import re

import pulumi

# The Service, and the first label of its cluster DNS names.
SERVICE_NAME = "registry"
DEPLOYMENT_NAME = "registry"
CRON_JOB_NAME = "registry-gc"
DISRUPTION_BUDGET_NAME = "registry"
TLS_SECRET = "registry-tls"
AUTH_SECRET = "registry-auth"
S3_SECRET = "registry-s3"
IMAGE_PULL_SECRET = "registry-image-pull"
# The proxy's nginx.conf (registry/proxy.py).
PROXY_CONFIG_MAP = "registry-proxy"
DATA_CLAIM = "registry-data"
# In each namespace of registry:pullSecretNamespaces.
PULL_SECRET_NAME = "registry-pull-secret"
# nodeTrust: cluster: the DaemonSet and everything of its namespace share this name.
NODE_TRUST_NAME = "registry-node-trust"
# On the DaemonSet: what finds the nodes' record (registry/cluster_trust.py).
NODE_TRUST_RECORD_ANNOTATION = "registry.pulumi.com/node-record"
# KEP-1755's discovery ConfigMap: its name and namespace are the KEP's.
DISCOVERY_CONFIGMAP = "local-registry-hosting"
DISCOVERY_NAMESPACE = "kube-public"

# On the TLS Secret: the CA generation the pods serve with, which the next run
# reads (registry/cluster/checks.py) to refuse a caGeneration that skips or goes down.
CA_GENERATION_LABEL = "registry.pulumi.com/ca-generation"
# On the pod template: a digest of what the registry reads only at start.
CONFIG_DIGEST_ANNOTATION = "registry.pulumi.com/config-digest"
# The label kubelet sets to the node's name; storage node pins the pod by it.
HOSTNAME_LABEL = "kubernetes.io/hostname"
# pulumi-kubernetes puts it on every object it creates (tests/engine/test_engine.py runs
# `up` twice over objects that carry it).
MANAGED_BY = ("app.kubernetes.io/managed-by", "pulumi")
# Which stack made the registry's namespace and Service: a later up of the same
# stack knows them as its own whatever else changed (the hostname, say), and
# another stack's are someone else's (registry/cluster/checks.py). Not in selectors,
# which cannot change.
STACK_LABEL = "registry.pulumi.com/stack"


def labels(hostname: str) -> dict[str, str]:
    """The registry's pods and objects: the Deployment's selector."""
    return {"app.kubernetes.io/name": "registry", "app.kubernetes.io/instance": hostname}


def stack_identity() -> str:
    """The stack, as nodes record who owns their changes: organization/project/stack."""
    return f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"


def stack_label_value() -> str:
    """organization.project.stack, or a digest of it where that is no label value."""
    value = stack_identity().replace("/", ".")
    if len(value) <= 63 and re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", value):
        return value
    return "sha256-" + hashlib.sha256(value.encode()).hexdigest()[:32]


def owned_labels(hostname: str) -> dict[str, str]:
    """The registry's labels and the stack's: on the namespace and the Service."""
    return {**labels(hostname), STACK_LABEL: stack_label_value()}


def service_dns_names(namespace: str) -> list[str]:
    """The Service's names in cluster DNS, short first."""
    return [f"{SERVICE_NAME}.{namespace}.svc", f"{SERVICE_NAME}.{namespace}.svc.cluster.local"]


def node_trust_namespace(namespace: str) -> str:
    """nodeTrust: cluster: the DaemonSet's namespace, beside the registry's."""
    return f"{namespace}-node-trust"
