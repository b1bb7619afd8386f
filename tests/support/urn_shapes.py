"""The resource graph the program registers, for configurations that between
them make every resource: URN, parent and dependencies of each.

tests/fixtures/urns.json holds this graph as the release before the
restructuring (issue 18) made it; test_urns.py compares today's program
against it, so that a move in the code never moves a resource (a changed URN
is a delete and a create to the engine: for the namespace, every image).
Regenerate only for a deliberate change: python3 -m tests.support.urn_shapes > tests/fixtures/urns.json
Deliberate changes so far: the storage node's folder command runs after that
node's trust command and is no longer deleted before a replacement (it is never
replaced); node trust from the cluster joined the graph with its storage
DaemonSet and the ClusterRole that reads its namespace (issue 25); the proxy
(issue 29) added its ConfigMap and the pull secrets' user's password and salt,
and the pull secrets now wait for the Deployment's rollout instead of the
registry's namespace waiting for them (no URN moved: checked by comparing both).
"""

from __future__ import annotations

import json

from tests.support.certs import key_pem, make_ca, make_leaf, pem
from tests.support.stack import FakeCluster, run_stack

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\ntest-key-not-real\n-----END OPENSSH PRIVATE KEY-----\n"
NODES = [
    {"name": "cp", "host": "192.168.56.10"},
    {"name": "worker-1", "host": "192.168.56.11", "port": 2222, "runtime": "containerd"},
]
DOCKER_CONFIG = json.dumps({"auths": {"mirror.example.internal": {"auth": "dXNlcjpwYXNz"}}})


def configurations() -> dict[str, tuple[dict, FakeCluster | None]]:
    ca = make_ca()
    key, leaf = make_leaf(ca)
    own = {"tlsCertificate": pem(leaf), "tlsKey": key_pem(key), "tlsCa": pem(ca[1])}
    secret_cluster = FakeCluster(missing={"registry"}, ranges=["10.96.0.0/12"], secrets={
        ("cert-manager", "registry-tls"): ("kubernetes.io/tls", {"tls.crt": own["tlsCertificate"], "tls.key": own["tlsKey"], "ca.crt": own["tlsCa"]})})
    return {
        "pvc, nodes, collection": ({"nodes": NODES, "sshPrivateKey": KEY, "users": ["admin", "ci"],
                                    "pullSecretNamespaces": ["default", "apps"]}, None),
        "node storage": ({"nodes": NODES, "sshPrivateKey": KEY, "storage": "node", "storageNode": "worker-1"}, None),
        "s3, replicas, mirror, accounts": ({
            "storage": "s3", "replicas": 3, "s3": {"bucket": "registry"}, "s3AccessKeyId": "AKIA",
            "s3SecretAccessKey": "secret", "imagePullSecret": DOCKER_CONFIG, "serviceAccountPullSecret": True,
            "metrics": False, "discovery": False,
            "sshBastion": {"host": "bastion.example.internal"}, "nodes": NODES, "sshPrivateKey": KEY}, None),
        "own certificate, no nodes": ({**own, "gcSchedule": ""}, None),
        "certificate from a Secret": ({"tlsSecret": "cert-manager/registry-tls"}, secret_cluster),
        "node trust from the cluster, node storage": ({
            "nodeTrust": "cluster", "storage": "node", "storageNode": "worker-1", "imagePullSecret": DOCKER_CONFIG},
            FakeCluster(missing={"registry", "registry-node-trust"}, ranges=["10.96.0.0/12"])),
    }


def graph(config: dict, cluster: FakeCluster | None) -> list[dict]:
    run = run_stack(config, cluster=cluster)
    assert run.error is None, run.error
    return sorted(
        ({"urn": r.urn, "parent": r.parent, "dependsOn": sorted(set(r.dependencies)),
          "deleteBeforeReplace": r.delete_before_replace} for r in run.resources),
        key=lambda r: r["urn"],
    )


def graphs() -> dict[str, list[dict]]:
    return {name: graph(config, cluster) for name, (config, cluster) in configurations().items()}


if __name__ == "__main__":
    print(json.dumps(graphs(), indent=1))
