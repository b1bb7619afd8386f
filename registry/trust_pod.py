"""nodeTrust cluster: the DaemonSets' pods, as pure functions (no resource is made here).

Two DaemonSets run registry/node/pod.sh in the same kind of pod: node trust on
every node, and with storage node the data folder's on that node. The pod runs
as root in the host's root, mounted at /host, with the capabilities editing
root's files takes and no more; its one container runs the node program's
create until it succeeds (then it is Ready, by its readiness probe), and gives
the node back when its DaemonSet is deleted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from .names import IMAGE_PULL_SECRET, NODE_TRUST_NAME
from .node_script import CLUSTER_ENTRY, STATE_FORMAT

# Where the pod finds its files, and the host's root.
FILES_DIR = "/etc/registry-node-trust"
HOST_ROOT = "/host"
# The pods' API token, where pods find theirs (registry/node/pod.sh reads it there).
ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# A pod gives its node back in about a second (a delete run with
# update-ca-certificates; bench/cluster_trust.py, docs/operations.md); the grace
# period leaves room for a node many times slower and for a few retries.
GRACE_SECONDS = 60
# How long `pulumi up` waits for every node's pod to be Ready: a node that is
# down holds it that long (registry/cluster/checks.py names it first), then up fails.
ROLLOUT_TIMEOUT_SECONDS = 300
# Enough to chroot and run the program as root in the host's root, no more:
# chown/chmod of what it installs (CHOWN, FOWNER), writing where only root may
# (DAC_OVERRIDE) and chroot itself (SYS_CHROOT). Not privileged: no devices,
# no mounts, no other namespaces. tests/engine/test_cluster_trust.py runs the
# program under exactly this set.
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SYS_CHROOT")
TOKEN_SECRET = f"{NODE_TRUST_NAME}-token"
# With storage node: the folder's DaemonSet, on that node alone.
STORAGE_NAME = "registry-storage"
# When pod.sh gives the node back (GIVE_BACK): trust whenever the DaemonSet or its
# namespace goes; the folder only when its DaemonSet is deleted and its namespace stays.
TRUST_GIVE_BACK = "torn-down"
STORAGE_GIVE_BACK = "deleted"


def app_labels(name: str, hostname: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": hostname}


def files_name(prefix: str, files: Mapping[str, str]) -> str:
    """A ConfigMap's name: its content's digest. A change makes a new one, and
    pods that are running keep the files they started with, to the end."""
    digest = hashlib.sha256()
    for key in sorted(files):
        digest.update(f"{key}\0{files[key]}\0".encode())
    return f"{prefix}-{digest.hexdigest()[:10]}"


def node_record(endpoint: str, stack: str) -> str:
    """What finds the nodes' record: a change replaces the trust DaemonSet, whose
    old pods give the nodes back with the old values before the new ones run."""
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


def container(name: str, image: str, daemon_set: str, give_back: str) -> dict:
    script = f"{FILES_DIR}/pod.sh"
    env = [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "DAEMONSET", "value": daemon_set},
        {"name": "GIVE_BACK", "value": give_back},
        {"name": "FILES", "value": FILES_DIR},
        {"name": "HOST_ROOT", "value": HOST_ROOT},
        # mktemp in the container: its root is read-only.
        {"name": "TMPDIR", "value": "/tmp"},
    ]
    return {
        "name": name,
        "image": image,
        "command": ["/bin/sh", script, "run"],
        "env": env,
        # Ready once create has succeeded in this container (pod.sh marks it).
        "readinessProbe": {"exec": {"command": ["/bin/sh", script, "ready"]}, "periodSeconds": 2},
        "securityContext": security_context(),
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "128Mi"}},
        "volumeMounts": [
            {"name": "host", "mountPath": HOST_ROOT},
            {"name": "files", "mountPath": FILES_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "account", "mountPath": ACCOUNT_DIR, "readOnly": True},
        ],
    }


def pod_spec(container_spec: dict, files: str, pull_secret: bool, node: str | None = None) -> dict:
    """The pod of either DaemonSet: `node` pins it to one node (the storage node)."""
    spec: dict = {
        "serviceAccountName": NODE_TRUST_NAME,
        # The pod's own projected token is bound to the pod: once its deletion time has
        # passed, the API server refuses it (401). That is the very moment a node that was
        # down at destroy comes back and must still read the DaemonSet; the token of the
        # account's own Secret stays valid as long as the account.
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": GRACE_SECONDS,
        # Every node, control-plane and tainted ones too.
        "tolerations": [{"operator": "Exists"}],
        "containers": [container_spec],
        "volumes": [
            {"name": "host", "hostPath": {"path": "/", "type": "Directory"}},
            {"name": "files", "configMap": {"name": files, "defaultMode": 0o444}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
            {"name": "account", "secret": {"secretName": TOKEN_SECRET, "defaultMode": 0o400}},
        ],
    }
    if node is not None:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    if pull_secret:
        spec["imagePullSecrets"] = [{"name": IMAGE_PULL_SECRET}]
    return spec


def daemon_set_spec(labels: dict[str, str], pod: dict) -> Any:
    """The DaemonSet's spec, plain data as the API documents it (Any: the SDK's typed dicts add nothing)."""
    return {
        "selector": {"matchLabels": labels},
        # Every pod at once: a pod's stop during a roll leaves its node as it is, so a
        # roll takes nothing away, and a node that is down (its old pod never goes)
        # holds back no other node.
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}},
        "template": {"metadata": {"labels": labels}, "spec": pod},
    }
