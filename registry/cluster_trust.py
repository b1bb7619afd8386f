"""nodeTrust: cluster — the node program run on every node by a DaemonSet, with no SSH.

The same program and parameters as over SSH (registry/node_script.py) reach
every node, present and future, through a DaemonSet in a namespace of its own
(labelled for the `privileged` Pod Security level, so that the registry's
can enforce `restricted`). Its init container hands the program to the host's root,
mounted by hostPath at /host, through chroot (registry/node/pod.sh); its main
container sleeps and, told to stop while the DaemonSet carries a
deletionTimestamp, gives the node back before it exits. It reads the
DaemonSet with a Role that allows `get` on that one object; in its own
namespace, the Role also lists pods and creates events, to name a node that is
down and cannot be given back, where `pulumi destroy` shows it.

pulumi-kubernetes deletes with foreground propagation and waits until the
DaemonSet is gone (provider/pkg/await/await.go, Deletion), which is after its
pods are: so `pulumi destroy` returns once every node is given back, or fails
after DELETE_TIMEOUT naming the DaemonSet whose pods could not finish.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from . import node_storage
from .names import (
    IMAGE_PULL_SECRET,
    NODE_TRUST_NAME,
    NODE_TRUST_RECORD_ANNOTATION,
    node_trust_namespace,
    owned_labels,
    stack_identity,
)
from .node_script import CLUSTER_ENTRY, POD_SCRIPT, STATE_FORMAT, NodeTrustParams, daemon_files
from .workload import manifest

# Where the pod finds its files, and the host's root.
FILES_DIR = "/etc/registry-node-trust"
HOST_ROOT = "/host"
# The pods' API token, where pods find theirs (registry/node/pod.sh reads it there).
ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# A pod gives its node back in about a second (a delete run with
# update-ca-certificates; bench/cluster_trust.py, docs/operations.md); the grace
# period leaves room for a node many times slower and for a few retries.
GRACE_SECONDS = 60
# How long `pulumi destroy` waits for the DaemonSet (and so for every node) before
# it fails: the grace period, and the time the controllers take to get there.
DELETE_TIMEOUT_SECONDS = GRACE_SECONDS + 60
# Enough to chroot and run the program as root in the host's root, no more:
# chown/chmod of what it installs (CHOWN, FOWNER), writing where only root may
# (DAC_OVERRIDE) and chroot itself (SYS_CHROOT). Not privileged: no devices,
# no mounts, no other namespaces. tests/engine/test_cluster_trust.py runs the
# program under exactly this set.
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SYS_CHROOT")
TOKEN_SECRET = f"{NODE_TRUST_NAME}-token"


def app_labels(hostname: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": NODE_TRUST_NAME, "app.kubernetes.io/instance": hostname}


def files_name(files: Mapping[str, str]) -> str:
    """The ConfigMap's name: its content's digest. A change makes a new one, and
    pods that are running keep the files they started with, to the end."""
    digest = hashlib.sha256()
    for key in sorted(files):
        digest.update(f"{key}\0{files[key]}\0".encode())
    return f"{NODE_TRUST_NAME}-{digest.hexdigest()[:10]}"


def node_record(endpoint: str, stack: str) -> str:
    """What finds the nodes' record: a change replaces the DaemonSet, whose old
    pods give the nodes back with the old values before the new ones run."""
    return f"{STATE_FORMAT} {endpoint} {stack} {CLUSTER_ENTRY}"


def security_context() -> dict:
    return {
        "runAsUser": 0,
        "runAsNonRoot": False,
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": list(CAPABILITIES)},
        # SELinux hosts label /etc etc_t, which container_t cannot write.
        "seLinuxOptions": {"type": "spc_t"},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container(name: str, image: str, action: str, storage_node: str | None) -> dict:
    env = [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "DAEMONSET", "value": NODE_TRUST_NAME},
        {"name": "STORAGE_NODE", "value": storage_node or ""},
        {"name": "FILES", "value": FILES_DIR},
        {"name": "HOST_ROOT", "value": HOST_ROOT},
        # mktemp in the container: its root is read-only.
        {"name": "TMPDIR", "value": "/tmp"},
    ]
    return {
        "name": name,
        "image": image,
        "command": ["/bin/sh", f"{FILES_DIR}/pod.sh", action],
        "env": env,
        "securityContext": security_context(),
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "128Mi"}},
        "volumeMounts": [
            {"name": "host", "mountPath": HOST_ROOT},
            {"name": "files", "mountPath": FILES_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "account", "mountPath": ACCOUNT_DIR, "readOnly": True},
        ],
    }


def pod_spec(image: str, files: str, storage_node: str | None, pull_secret: bool) -> dict:
    spec = {
        "serviceAccountName": NODE_TRUST_NAME,
        # The pod's own projected token is bound to the pod: once its deletion time has
        # passed, the API server refuses it (401). That is the very moment a node that was
        # down at destroy comes back and must still read the DaemonSet; the token of the
        # account's own Secret stays valid as long as the account.
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": GRACE_SECONDS,
        # Every node, control-plane and tainted ones too.
        "tolerations": [{"operator": "Exists"}],
        "initContainers": [container("trust", image, "create", storage_node)],
        "containers": [container("give-back-on-delete", image, "wait", storage_node)],
        "volumes": [
            {"name": "host", "hostPath": {"path": "/", "type": "Directory"}},
            {"name": "files", "configMap": {"name": files, "defaultMode": 0o444}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
            {"name": "account", "secret": {"secretName": TOKEN_SECRET, "defaultMode": 0o400}},
        ],
    }
    if pull_secret:
        spec["imagePullSecrets"] = [{"name": IMAGE_PULL_SECRET}]
    return spec


@dataclass
class ClusterNodeTrustArgs:
    hostname: str
    port: int
    # The registry's namespace; the DaemonSet's is named after it.
    namespace: str
    image: str
    ca_cert_pem: pulumi.Input[str]
    cluster_ip: pulumi.Input[str]
    # storage node: the node whose folder keeps the data, the folder, keepData.
    storage_node: str | None = None
    storage_path: str | None = None
    keep_data: bool = True
    # A .dockerconfigjson for nodeTrustImage (registry:imagePullSecret).
    image_pull_secret: pulumi.Input[str] | None = None


class ClusterNodeTrust(pulumi.ComponentResource):
    daemon_set: k8s.apps.v1.DaemonSet

    def __init__(self, name: str, args: ClusterNodeTrustArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("registry:index:ClusterNodeTrust", name, None, opts)
        stack = stack_identity()
        ns = node_trust_namespace(args.namespace)
        labels = app_labels(args.hostname)
        record = node_record(f"{args.hostname}:{args.port}", stack)
        params = NodeTrustParams(hostname=args.hostname, port=args.port, stack=stack, entry=CLUSTER_ENTRY)

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": ns,
                "labels": {
                    **owned_labels(args.hostname),
                    # hostPath and root: only the privileged level admits them.
                    "pod-security.kubernetes.io/enforce": "privileged",
                    "pod-security.kubernetes.io/warn": "privileged",
                    "pod-security.kubernetes.io/audit": "privileged",
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        meta = manifest({"name": NODE_TRUST_NAME, "namespace": ns, "labels": labels})
        account = k8s.core.v1.ServiceAccount(f"{name}-account", metadata=meta, opts=in_ns)
        role = k8s.rbac.v1.Role(
            f"{name}-role",
            metadata=meta,
            rules=manifest(
                [
                    # Whether the DaemonSet is being deleted (registry/node/pod.sh).
                    {
                        "apiGroups": ["apps"],
                        "resources": ["daemonsets"],
                        "resourceNames": [NODE_TRUST_NAME],
                        "verbs": ["get"],
                    },
                    # At destroy: which of its pods are not Ready, named in events on the DaemonSet.
                    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
                    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
                ]
            ),
            opts=in_ns,
        )
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-role-binding",
            metadata=meta,
            role_ref=manifest({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NODE_TRUST_NAME}),
            subjects=[{"kind": "ServiceAccount", "name": NODE_TRUST_NAME, "namespace": ns}],
            opts=in_ns,
        )
        token = k8s.core.v1.Secret(
            f"{name}-token",
            metadata=manifest(
                {
                    **meta,
                    "name": TOKEN_SECRET,
                    "annotations": {
                        "kubernetes.io/service-account.name": NODE_TRUST_NAME,
                        # The token controller fills it in; the pods need it from their start.
                        "pulumi.com/waitFor": "jsonpath={.data.token}",
                    },
                }
            ),
            type="kubernetes.io/service-account-token",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace, account]),
        )
        needed: list[pulumi.Resource] = [namespace, account, role, binding, token]
        if args.image_pull_secret is not None:
            needed.append(
                k8s.core.v1.Secret(
                    f"{name}-image-pull",
                    metadata=manifest({**meta, "name": IMAGE_PULL_SECRET}),
                    type="kubernetes.io/dockerconfigjson",
                    string_data={".dockerconfigjson": args.image_pull_secret},
                    opts=in_ns,
                )
            )

        storage: dict[str, str] = {}
        if args.storage_node and args.storage_path:
            storage = {
                "storage-create": node_storage.create_script(args.storage_path),
                "storage-delete": node_storage.delete_script(args.storage_path, args.keep_data),
            }
        files = pulumi.Output.all(args.cluster_ip, args.ca_cert_pem).apply(
            lambda values: {**daemon_files(params, values[0], values[1]), **storage, "pod.sh": POD_SCRIPT}
        )
        files_map = k8s.core.v1.ConfigMap(
            f"{name}-files",
            metadata=manifest({**meta, "name": files.apply(files_name)}),
            data=files,
            immutable=True,
            opts=in_ns,
        )
        self.daemon_set = k8s.apps.v1.DaemonSet(
            f"{name}-daemon-set",
            metadata=manifest({**meta, "annotations": {NODE_TRUST_RECORD_ANNOTATION: record}}),
            spec=manifest(
                {
                    "selector": {"matchLabels": labels},
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": files_map.metadata.name.apply(
                            lambda files_name: pod_spec(
                                args.image, files_name, args.storage_node, args.image_pull_secret is not None
                            )
                        ),
                    },
                }
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*needed, files_map],
                # The old pods give the nodes back with the old record before the new ones write theirs.
                replace_on_changes=["metadata.annotations"],
                delete_before_replace=True,
                custom_timeouts=pulumi.CustomTimeouts(delete=f"{DELETE_TIMEOUT_SECONDS}s"),
            ),
        )
        self.register_outputs({})
