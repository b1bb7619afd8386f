"""Values several test modules use: a base config, scheduling knobs, a host key."""

import json

THREE_NODES = [
    {"name": "cp", "host": "192.168.56.10"},
    {"name": "worker-1", "host": "192.168.56.11", "port": 2222},
    {"name": "worker-2", "host": "worker-2.example.internal", "user": "ubuntu"},
]

BASE_CONFIG = {
    "clusterIp": "10.96.0.50",
    "users": ["admin", "ci"],
    "pullSecretNamespaces": ["default", "apps"],
    "nodes": THREE_NODES,
    "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\ntest-key-not-real\n-----END OPENSSH PRIVATE KEY-----\n",
}

KNOBS = {
    "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    "nodeSelector": {"disktype": "ssd"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "registry", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}},
}
MIRROR_AUTH = json.dumps({"auths": {"mirror.internal:5000": {"auth": "bWlycm9yOnMzY3JldA=="}}})

# A real ed25519 public key line, as `ssh-keyscan -t ed25519` prints it after the host name.
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINPxDQB8MdU6LMnnmNqGHrKF6hFyVzGe2119w2bPjwtf"

# The simulated nodes' cluster (tests/support/nodes.py): the registry's Service address, on loopback.
CLUSTER_IP = "127.0.10.1"
SERVICE_CIDR = "127.0.10.0/24"
# The program's defaults, as a user who sets nothing meets them.
NAMESPACE = "registry"
TRUST_NAMESPACE = f"{NAMESPACE}-node-trust"
NAME = "image-registry"
STORAGE = "/var/lib/registry-data"
# The type token of pulumi-command's remote Command, as the engine and the mocks name it.
COMMAND = "command:remote:Command"
