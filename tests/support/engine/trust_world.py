"""A cluster whose nodes trust the registry through the DaemonSet (nodeTrust: cluster), for
the engine layer's tests and bench/cluster_trust.py.

The real API server, controller manager and scheduler (tests/support/engine/cluster.py),
one kwok node for the registry's own pod, simulated nodes (tests/support/nodes.py) run by
TestKubelet (tests/support/kubelet.py), and a stack of the committed dev config, driven by
the real Pulumi CLI. The registry runs from the Deployment and Secrets the API server holds,
on the Service's address, where the nodes pull from it by name.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from registry.names import NODE_TRUST_NAME
from registry.node_script import NodeTrustParams
from tests.support.constants import NAME, NAMESPACE, SERVICE_CIDR, TRUST_NAMESPACE
from tests.support.engine.cluster import ControlPlane
from tests.support.engine.project import EngineProject
from tests.support.engine.stack import Stack
from tests.support.forward import Forwarder
from tests.support.kubelet import TestKubelet
from tests.support.nodes import NEEDED, Node, NodeFactory, Snapshot, simulated_nodes
from tests.support.registry_server import REGISTRY_TOOL, PodSource, Registry
from tests.support.stack import ROOT

CLUSTER_IP = "127.0.10.60"
ENDPOINT = f"{NAME}:5000"
IMAGE = "cluster/hello:v1"
TOOLS = {**NEEDED, **REGISTRY_TOOL, "skopeo": "skopeo", "setpriv": "util-linux", "curl": "curl"}
# The registry's own pod goes to the kwok node; the DaemonSet goes everywhere.
KWOK_NODE = "kwok-1"
# A node without a heartbeat for this long is NotReady (the controller's default is 50s).
NODE_GRACE = "15s"


def dev_config() -> dict[str, object]:
    """The config of the README's first run (its dev stack): keys without `registry:`."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## First run", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return {key: value for key, value in re.findall(r"pulumi config set registry:(\S+) (\S+)", block)}


@dataclass
class World:
    root: Path
    cluster: ControlPlane
    kubelet: TestKubelet
    factory: NodeFactory
    stack: Stack
    nodes: dict[str, Node]
    before: dict[str, Snapshot]
    registry: Registry | None = None
    password: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    # Another stack's SSH-made entry on a node: (node, its parameters).
    other: tuple[Node, NodeTrustParams] | None = None

    @property
    def project(self) -> EngineProject:
        return self.stack.project

    def join(self, name: str, prepare: str = "") -> float:
        """A new simulated node joins as `name`; returns when its Node object was made (monotonic)."""
        node = self.factory.start(prepare)
        self.before[name] = node.snapshot()
        self.nodes[name] = node
        return self.kubelet.join(name, node)

    def configure(self, **overrides: object) -> None:
        """The dev stack's config as it is, and what this machine needs besides: the Service
        range on loopback (where the registry process listens for the nodes), the registry's
        pod on the kwok node (TestKubelet does not run the registry itself), and a volume of
        the size the test made."""
        self.stack.configure(**{**dev_config(), "serviceCidr": SERVICE_CIDR, "clusterIp": CLUSTER_IP,
                                "storageSize": "1Gi", "nodeSelector": {"type": "kwok"}, **overrides})

    def daemon_set(self) -> dict | None:
        return self.cluster.api.find(f"/apis/apps/v1/namespaces/{TRUST_NAMESPACE}/daemonsets/{NODE_TRUST_NAME}")

    def trust_pods(self, daemon_set: str = NODE_TRUST_NAME) -> dict[str, dict]:
        """The pods of a DaemonSet (node trust's, or the storage folder's), by node."""
        selector = urllib.parse.quote(f"app.kubernetes.io/name={daemon_set}")
        pods = self.cluster.api.items(f"/api/v1/namespaces/{TRUST_NAMESPACE}/pods?labelSelector={selector}")
        return {p["spec"]["nodeName"]: p for p in pods}

    def start_registry(self) -> None:
        api = self.cluster.api
        if self.registry is not None:
            self.registry.stop()
        source = PodSource.from_cluster(
            api.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/registry"),
            api.get(f"/api/v1/namespaces/{NAMESPACE}/services/registry"),
            api.items(f"/api/v1/namespaces/{NAMESPACE}/secrets"),
            api.items(f"/api/v1/namespaces/{NAMESPACE}/configmaps"),
        )
        # The same folder each time: the claim's data is kept across restarts, its Secrets are rewritten.
        self.registry = Registry(source, self.root / "registry")
        self.registry.start()

    def pull(self, node: Node, timeout: float = 60) -> subprocess.CompletedProcess:
        """A pull by name, as the node's runtime would make it: TLS verified by the node's trust, the name by its hosts."""
        return node.inside("skopeo", "inspect", "--creds", f"admin:{self.password}", f"docker://{ENDPOINT}/{IMAGE}",
                           check=False, timeout=timeout)


def pod_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


@contextlib.contextmanager
def trust_world(bin_dir: Path, root: Path, ipv6: bool = False, played: Callable[[dict], bool] = lambda pod: False,
                ) -> Iterator[World]:
    """A control plane with its kwok node, TestKubelet, and a created stack; no simulated node yet.

    `ipv6`: pods are told the API server's address as [::1], forwarded to it. `played`: pods
    TestKubelet reports Running and Ready without running them (see TestKubelet)."""
    with simulated_nodes() as factory:
        cluster = ControlPlane(bin_dir, root / "cluster", service_cidr=SERVICE_CIDR, node_names=(KWOK_NODE,),
                               node_grace=NODE_GRACE)
        kubelet: TestKubelet | None = None
        world: World | None = None
        forwarder: Forwarder | None = None
        try:
            cluster.start()
            cluster.add_volume()
            service = None
            if ipv6:
                target = urllib.parse.urlsplit(cluster.api.server)
                forwarder = Forwarder(("::1", 0), (target.hostname, target.port))
                service = ("::1", forwarder.port)
            kubelet = TestKubelet(cluster.api, root / "kubelet", service=service, played=played)
            project = EngineProject(bin_dir, root / "main", cluster.kubeconfig)
            project.create_stack()
            world = World(root, cluster, kubelet, factory, Stack(project), {}, {})
            yield world
        finally:
            if world is not None and world.registry is not None:
                world.registry.stop()
            if kubelet is not None:
                kubelet.stop()
            if forwarder is not None:
                forwarder.stop()
            cluster.stop()
