"""A real node: the cluster's own kubelet pulls from the registry.

The real Pulumi CLI and pulumi-kubernetes, the real API server and controllers,
and real nodes (tests/support/real_node.py): kubelet, kube-proxy, containerd
and runc, in namespaces of their own, with images made here
(tests/support/images.py). The stack is the committed dev stack's config
(nodeTrust cluster) with the images pointing at those, and
`serviceAccountPullSecret: true`. The tests share it and run in file order,
as a user's day goes: up with the release before pushers and pullers, a push
from a workstation through the node port, a pod that runs an image from the
registry, the upgrade to this release under pulls, the pull secret that can
only pull, the password really required, a second up, rotations under pulls,
a node that joins later, daemons restarted, destroy. The machine is checked
to be as it was before, at the end.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from registry.names import NODE_TRUST_NAME
from tests.support.constants import NAMESPACE, TRUST_NAMESPACE
from tests.support.engine import toolchain_dir
from tests.support.engine.cluster import ControlPlane
from tests.support.engine.project import EngineProject, checkout
from tests.support.engine.stack import Stack
from tests.support.engine.trust_world import dev_config
from tests.support.images import Image, build
from tests.support.nodes import diff, require_tools, snapshot
from tests.support.polling import eventually
from tests.support.real_node import RealNode, Workstation, node_address, real_cluster
from tests.support.rotation import replace_password
from tests.support.stack import FakeCluster

pytestmark = pytest.mark.real_node

HELLO = "image-registry:5000/hello:v1"
# The last release before pushers and pullers (issue 29): its pull secrets log in as the first
# user, whose rights are every right; the day starts with it, and upgrades.
RELEASE_BEFORE_PULLERS = "8e9281a"
SAID = "hello from the private registry"
TOOLS = {"containerd": "containerd", "runc": "runc", "ctr": "containerd", "iptables": "iptables",
         "busybox": "busybox", "curl": "curl", "skopeo": "skopeo", "ldd": "libc-bin"}
# What a node's own files are compared by, before up and after destroy.
NODE_ROOTS = ("/etc", "/usr/local", "/var/lib/registry-node-trust")


@dataclass
class World:
    root: Path
    cluster: ControlPlane
    workstation: Workstation
    nodes: dict[str, RealNode]
    images: dict[str, Image]
    stack: Stack
    release: Path
    before: dict = field(default_factory=dict)
    password: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def project(self) -> EngineProject:
        return self.stack.project

    def up(self, release: Path | None = None) -> None:
        result = self.project.run_release("up", release) if release else self.project.up()
        assert result.code == 0, result.text + self.logs()
        self.password = self.project.outputs(show_secrets=True)["password"]

    def up_under_pulls(self, node: str = "node-1") -> tuple[int, list[str]]:
        """`up` while `node` pulls all the time with the pull secret of the moment: how many
        pulls ran, and the errors of those that failed."""
        failures: list[str] = []
        pulls = [0]
        stop = threading.Event()

        def pull_all_the_time() -> None:
            while not stop.is_set():
                result = self.pull(node)
                pulls[0] += 1
                if result.returncode != 0:
                    failures.append(result.stderr.strip())

        puller = threading.Thread(target=pull_all_the_time)
        puller.start()
        try:
            self.up()
        finally:
            stop.set()
            puller.join()
        return pulls[0], failures

    def logs(self) -> str:
        return "".join(f"\n--- {n} kubelet\n{node.log('kubelet')[-3000:]}" for n, node in self.nodes.items())

    def pods(self, namespace: str) -> list[dict]:
        return self.cluster.api.items(f"/api/v1/namespaces/{namespace}/pods")

    def run_pod(self, name: str, namespace: str = "default", node: str = "node-1") -> dict:
        """A pod of the hello image, from the registry, on `node`; returns it once it ended or is stuck."""
        self.cluster.api.create(f"/api/v1/namespaces/{namespace}/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "nodeName": node, "containers": [{"name": "hello", "image": HELLO}]}})
        return eventually(lambda: self._settled(namespace, name), f"pod {name}", 120, every=0.5, detail=self.logs)

    def _settled(self, namespace: str, name: str) -> dict | None:
        pod = self.cluster.api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        statuses = pod["status"].get("containerStatuses") or [{}]
        waiting = statuses[0].get("state", {}).get("waiting", {})
        if pod["status"].get("phase") in ("Succeeded", "Failed") or waiting.get("reason") == "ImagePullBackOff":
            return pod
        return None

    def said(self, node: str, pod: dict) -> str:
        meta = pod["metadata"]
        logs = self.nodes[node].path(f"/var/log/pods/{meta['namespace']}_{meta['name']}_{meta['uid']}/hello")
        return "".join(p.read_text() for p in logs.glob("*.log"))

    def pull(self, node: str) -> subprocess.CompletedProcess:
        """A pull of the hello image by name on `node` through its containerd, as kubelet asks for it
        (CRI), with the credentials of the pull secret the cluster holds now."""
        secret = self.cluster.api.get("/api/v1/namespaces/default/secrets/registry-pull-secret")
        auths = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"]
        creds = base64.b64decode(auths["image-registry:5000"]["auth"]).decode()
        self.nodes[node].crictl("rmi", HELLO, check=False)
        return self.nodes[node].crictl("pull", "--creds", creds, HELLO, check=False)



def refused_for_its_login(error: str) -> bool:
    """A pull the registry refused for its credentials. Not "401" anywhere: crictl's log lines
    carry times such as E1205 11:31:23.192401, which a failed connection's error has too."""
    return "401 Unauthorized" in error or "unauthorized" in error.lower()


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    bin_dir = toolchain_dir()
    require_tools(TOOLS)
    root = tmp_path_factory.mktemp("real-node")
    root.chmod(0o755)
    images = build(root / "images")
    with real_cluster(bin_dir, root, images) as real:
        real.nodes["node-1"].join()
        project = EngineProject(bin_dir, root / "main", real.cluster.kubeconfig)
        project.create_stack()
        # pulumi-tls's certificate names the nodes' addresses, as the program reads them.
        stack = Stack(project, cluster=FakeCluster(missing={NAMESPACE, TRUST_NAMESPACE}, ranges=["10.96.0.0/12"],
                                                   addresses={"node-1": node_address(1)}))
        # The release before knows no proxyImage (and would refuse it): it comes with the upgrade.
        stack.configure(**{k: v for k, v in configuration(images).items() if k != "proxyImage"})
        release = checkout(RELEASE_BEFORE_PULLERS, root / "release")
        world = World(root, real.cluster, real.workstation, real.nodes, images, stack, release)
        for name, node in real.nodes.items():
            world.before[name] = snapshot(node.path, NODE_ROOTS)
        yield world


def configuration(images: dict[str, Image]) -> dict:
    """The committed dev stack's config, with the images made here."""
    return {**dev_config(), "image": images["registry"].name, "proxyImage": images["nginx"].pinned,
            "nodeTrustImage": images["node-trust"].pinned,
            "serviceAccountPullSecret": True, "storageSize": "1Gi"}


def test_up_returns_once_the_registry_runs_in_a_container_and_every_node_ran_the_node_program(world):
    started = time.monotonic()
    world.up(release=world.release)
    world.timings["up"] = time.monotonic() - started
    (pod,) = world.pods(NAMESPACE)
    assert ready(pod) and pod["status"]["containerStatuses"][0]["state"].get("running"), pod["status"]
    (trust,) = [p for p in world.pods(TRUST_NAMESPACE) if p["metadata"]["labels"]["app.kubernetes.io/name"] == NODE_TRUST_NAME]
    assert ready(trust) and trust["spec"]["nodeName"] == "node-1"
    node = world.nodes["node-1"]
    assert b"# BEGIN registry-node-trust image-registry:5000" in node.read("/etc/hosts")
    assert node.path("/etc/containerd/certs.d/image-registry:5000/hosts.toml").exists()
    # The registry serves from a container containerd started (a runc shim is its parent's parent).
    containers = json.loads(node.crictl("ps", "-o", "json").stdout)["containers"]
    assert {"registry", "trust"} <= {c["metadata"]["name"] for c in containers}
    names = {Path(f"/proc/{p}/comm").read_text().strip() for p in os.listdir("/proc") if p.isdigit()
             and Path(f"/proc/{p}/comm").exists()}
    assert {"kubelet", "kube-proxy", "containerd-shim", "registry"} <= {n[:15] for n in names} | {"containerd-shim"}
    assert any(n.startswith("containerd-shim") for n in names)


def test_a_workstation_pushes_through_the_node_port_with_the_stacks_outputs(world):
    outputs = world.project.outputs(show_secrets=True)
    assert outputs["externalEndpoints"] == ["192.168.77.2:30500"]
    ws = world.workstation
    setup = ws.inside("sh", stdin=outputs["workstationSetup"])
    assert "docker login 192.168.77.2:30500" in setup.stdout
    pushed = ws.inside("skopeo", "copy", "--dest-creds", f"{outputs['username']}:{outputs['password']}",
                       f"oci:{world.images['hello'].layout}:v1", "docker://192.168.77.2:30500/hello:v1", timeout=180,
                       check=False)
    assert pushed.returncode == 0, pushed.stderr


def test_a_pod_runs_an_image_of_the_registry_that_kubelet_pulled_by_name(world):
    started = time.monotonic()
    pod = world.run_pod("hello")
    world.timings["first pull"] = time.monotonic() - started
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert "imagePullSecrets" in pod["spec"], "the default ServiceAccount lists the pull secret"
    assert SAID in world.said("node-1", pod)


def test_upgrading_to_this_release_moves_the_pull_secrets_to_a_puller_and_refuses_no_pull(world):
    secret = "/api/v1/namespaces/default/secrets/registry-pull-secret"

    def user() -> str:
        auths = json.loads(base64.b64decode(world.cluster.api.get(secret)["data"][".dockerconfigjson"]))["auths"]
        return base64.b64decode(auths["image-registry:5000"]["auth"]).decode().split(":", 1)[0]

    assert user() == "admin", "the release before gave the pull secrets the first user's login"
    world.stack.configure(proxyImage=world.images["nginx"].pinned)
    started = time.monotonic()
    pulls, failures = world.up_under_pulls()
    world.timings["upgrade"] = time.monotonic() - started
    assert user() == "cluster-puller"
    refused = [f for f in failures if refused_for_its_login(f)]
    assert pulls > 0 and refused == [], refused
    # One pod on one volume (storage pvc): it restarts once (Recreate) for the proxy, and pulls
    # meanwhile find nothing listening; kubelet retries those. None is refused for its login.
    print(f"upgrade: {len(failures)} of {pulls} pulls failed during the up, none with 401")
    (pod,) = world.pods(NAMESPACE)
    assert ready(pod) and [c["name"] for c in pod["spec"]["initContainers"]] == ["proxy"]
    assert pod["status"]["initContainerStatuses"][0]["started"], pod["status"]
    assert world.pull("node-1").returncode == 0
    preview = world.project.preview(expect_no_changes=True)
    assert preview.code == 0, preview.text


def test_the_pull_secrets_login_pulls_and_cannot_push(world):
    """The pull secret the cluster holds, as a workstation that stole it would use it."""
    secret = world.cluster.api.get("/api/v1/namespaces/default/secrets/registry-pull-secret")
    auths = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"]
    user, password = base64.b64decode(auths["192.168.77.2:30500"]["auth"]).decode().split(":", 1)
    assert user == world.project.outputs()["pullUsername"] == "cluster-puller"
    ws = world.workstation
    pulled = ws.inside("skopeo", "inspect", "--creds", f"{user}:{password}", "docker://192.168.77.2:30500/hello:v1",
                       timeout=120, check=False)
    assert pulled.returncode == 0, pulled.stderr
    pushed = ws.inside("skopeo", "copy", "--dest-creds", f"{user}:{password}", f"oci:{world.images['hello'].layout}:v1",
                       "docker://192.168.77.2:30500/hello:overwritten", timeout=180, check=False)
    assert pushed.returncode != 0 and "unauthorized" in pushed.stderr.lower(), pushed.stderr


def test_a_pod_in_a_namespace_without_the_pull_secret_fails_to_pull_with_an_authentication_error(world):
    api = world.cluster.api
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "elsewhere"}})
    eventually(lambda: api.find("/api/v1/namespaces/elsewhere/serviceaccounts/default"), "the default ServiceAccount", 60, every=0.5)
    world.run_pod("hello", namespace="elsewhere")
    events = " ".join(e["message"] for e in api.items("/api/v1/namespaces/elsewhere/events"))
    assert "401 Unauthorized" in events or "unauthorized" in events.lower(), events


def test_a_second_up_changes_nothing_and_restarts_no_pod(world):
    before = {p["metadata"]["uid"]: p["status"]["containerStatuses"][0]["restartCount"]
              for ns in (NAMESPACE, TRUST_NAMESPACE) for p in world.pods(ns)}
    preview = world.project.preview(expect_no_changes=True)
    assert preview.code == 0, preview.text
    world.up()
    after = {p["metadata"]["uid"]: p["status"]["containerStatuses"][0]["restartCount"]
             for ns in (NAMESPACE, TRUST_NAMESPACE) for p in world.pods(ns)}
    assert after == before


@pytest.mark.parametrize("rotation", ["ca", "password"])
def test_a_rotation_never_fails_a_pull_for_trust_and_a_new_pod_pulls_after_it(world, rotation):
    if rotation == "password":
        # The pull secrets' own user: its new password reaches them only once the pods serve it.
        replace_password(world.stack.state, world.stack.run, "cluster-puller")
        world.stack.configure()
    else:
        world.stack.configure(caGeneration=2)
    pulls, failures = world.up_under_pulls()
    assert pulls > 0
    untrusted = [f for f in failures if "x509" in f or "certificate" in f]
    assert untrusted == [], untrusted
    refused = [f for f in failures if refused_for_its_login(f)]
    if rotation == "ca":
        assert refused == [], refused
    # The registry has one pod on one volume (storage pvc): it restarts (Recreate), and pulls
    # meanwhile find nothing listening; kubelet retries them. The pull secrets change only once
    # the new pod serves the new password (registry/pull_secrets.py); from then until the
    # Secret is written (a second or two), pulls with the old one get 401, and kubelet retries
    # them. Either way, once up returns, every pull works.
    print(f"{rotation}: {len(failures)} of {pulls} pulls failed during the up ({len(refused)} with 401)")
    assert world.pull("node-1").returncode == 0
    pod = world.run_pod(f"hello-after-{rotation}")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]


def test_a_node_that_joins_after_up_trusts_the_registry_within_seconds(world):
    node = world.nodes["node-2"]
    joined = node.join()

    def trusted() -> bool:
        pods = [p for p in world.pods(TRUST_NAMESPACE) if p["spec"].get("nodeName") == "node-2"]
        return bool(pods) and ready(pods[0])

    eventually(trusted, "node-2's node-trust pod", 120, every=0.5, detail=world.logs)
    world.timings["join"] = time.monotonic() - joined
    pod = world.run_pod("hello-on-node-2", node="node-2")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert SAID in world.said("node-2", pod)


def test_containerd_and_kubelet_restarted_mid_life_keep_pulls_working_and_install_nothing_twice(world):
    node = world.nodes["node-1"]
    trusted = snapshot(node.path, NODE_ROOTS)
    restarts = {p["metadata"]["uid"]: p["status"]["containerStatuses"][0]["restartCount"]
                for p in world.pods(TRUST_NAMESPACE)}
    for daemon in ("containerd", "kubelet"):
        node.restart(daemon)
    eventually(lambda: ready(world.cluster.api.get("/api/v1/nodes/node-1")), "node-1 Ready again", 120, every=0.5, detail=world.logs)
    pod = world.run_pod("hello-after-restarts")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert diff(trusted, snapshot(node.path, NODE_ROOTS)) == [], "the node program did nothing again"
    after = {p["metadata"]["uid"]: p["status"]["containerStatuses"][0]["restartCount"]
             for p in world.pods(TRUST_NAMESPACE)}
    assert after == restarts


def test_destroy_gives_every_node_back_byte_for_byte_and_a_pull_then_fails(world):
    for namespace in ("default", "elsewhere"):
        for pod in world.pods(namespace):
            world.cluster.api.delete(f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}")
    started = time.monotonic()
    destroy = world.project.destroy()
    world.timings["destroy"] = time.monotonic() - started
    assert destroy.code == 0, destroy.text + world.logs()
    assert world.cluster.api.find(f"/apis/apps/v1/namespaces/{TRUST_NAMESPACE}/daemonsets/{NODE_TRUST_NAME}") is None
    for name, node in world.nodes.items():
        assert diff(world.before[name], snapshot(node.path, NODE_ROOTS)) == [], name
        result = node.crictl("pull", HELLO, check=False)
        assert result.returncode != 0 and "lookup image-registry" in result.stderr, result.stderr
    print("timings:", {k: round(v, 1) for k, v in world.timings.items()})
