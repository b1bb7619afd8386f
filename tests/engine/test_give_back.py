"""nodeTrust cluster: every node is given back, whatever happens (issue 25, defects 2 to 7).

The real Pulumi CLI and pulumi-kubernetes against a real API server, controller
manager and scheduler; the DaemonSet's pods on simulated nodes through
TestKubelet (tests/support/kubelet.py). Here the pods are told the API server's
address as IPv6 ([::1], forwarded to it), as on an IPv6 or dual-stack cluster,
so every give-back in this module goes over IPv6 (tests/engine/test_cluster_trust.py
does the same over IPv4).

The tests share one stack and run in file order: node addresses the cluster
reports, a CA rotation with a node down, a node whose create fails, a destroy
that fails on a node that is down and the up after it, and a namespace
deleted by hand. After every destroy that returns 0, every node that ever ran
the node program is byte for byte as before.
"""

from __future__ import annotations

import threading
import time

import pytest

from registry.names import NODE_TRUST_NAME
from tests.support.constants import TRUST_NAMESPACE
from tests.support.engine import toolchain_dir
from tests.support.engine.trust_world import ENDPOINT, IMAGE, TOOLS, World, pod_ready, trust_world
from tests.support.nodes import diff, require_tools
from tests.support.oci import write_image
from tests.support.polling import eventually
from tests.support.trust import WITH_CONFIG_PATH

CA_FILE = f"/etc/containerd/certs.d/{ENDPOINT}/ca.crt"
# A node whose trust store cannot take a certificate in (a full disk, say), though it
# can rebuild without one: create fails after it has changed the node; delete works.
BROKEN_TRUST_STORE = (
    "cat > /usr/local/sbin/update-ca-certificates <<'EOF'\n#!/bin/sh\n"
    "if [ \"${1:-}\" = --fresh ]; then exec /usr/sbin/update-ca-certificates \"$@\"; fi\n"
    "echo 'update-ca-certificates: cannot write /etc/ssl/certs' >&2\nexit 1\nEOF\n"
    "chmod 755 /usr/local/sbin/update-ca-certificates\n"
)



def given_back(world: World, *names: str) -> None:
    for name in names or world.nodes:
        assert diff(world.before[name], world.nodes[name].snapshot()) == [], name


def push(world: World) -> None:
    world.start_registry()
    layout = world.root / "layout"
    if not layout.exists():
        write_image(layout, "v1", layers=2, seed=b"give-back")
    node = world.nodes["node-a"]
    pushed = node.inside("skopeo", "copy", "--dest-creds", f"admin:{world.password}", f"oci:{layout}:v1",
                         f"docker://{ENDPOINT}/{IMAGE}", check=False, timeout=120)
    assert pushed.returncode == 0, pushed.stderr


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    bin_dir = toolchain_dir()
    require_tools(TOOLS)
    root = tmp_path_factory.mktemp("give-back")
    root.chmod(0o755)
    with trust_world(bin_dir, root, ipv6=True) as w:
        w.configure()
        try:
            yield w
        finally:
            if w.kubelet.errors:
                print("test kubelet errors:", *w.kubelet.errors[-5:], sep="\n")


def test_only_ip_addresses_the_nodes_report_reach_the_certificate_and_the_login_line(world):
    """A kubelet writes its own Node's status, and the API server takes any text as an address."""
    api = world.cluster.api
    reported = {"hostile-1": "10.0.0.5;touch /tmp/pwned;", "hostile-2": "registry-1.docker.io", "honest": "10.0.0.7"}
    for name, address in reported.items():
        api.create("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
        world.kubelet.api.patch(f"/api/v1/nodes/{name}/status", {"status": {
            "addresses": [{"type": "InternalIP", "address": address}]}}, kind="application/strategic-merge-patch+json")
    try:
        preview = world.project.preview()
        assert preview.code == 0, preview.text
        text = preview.text
        assert "node hostile-1 reports the InternalIP '10.0.0.5;touch /tmp/pwned;', which is not an IP address" in text
        assert "node hostile-2 reports the InternalIP 'registry-1.docker.io', which is not an IP address" in text
        assert "docker login 10.0.0.7:30500" in text, text
        assert "pwned" not in text.split("Outputs:")[-1] and "docker login registry-1.docker.io" not in text
    finally:
        for name in reported:
            api.delete(f"/api/v1/nodes/{name}")


def test_up_gives_every_node_trust_and_a_pull_by_name_works(world):
    for name in ("node-a", "node-b"):
        world.join(name, prepare=WITH_CONFIG_PATH)
    up = world.project.up()
    assert up.code == 0, up.text + world.kubelet.logs()
    world.password = world.project.outputs(show_secrets=True)["password"]
    push(world)
    for node in world.nodes.values():
        assert world.pull(node).returncode == 0


def test_a_node_that_is_down_holds_back_no_other_node_in_a_ca_rotation_and_is_named(world):
    world.kubelet.down("node-b")
    eventually(lambda: not pod_ready(world.trust_pods()["node-b"]), "node-b's pod NotReady", 90, every=0.5)
    world.stack.configure(caGeneration=2)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("up", world.project.up()))
    thread.start()
    try:
        started = time.monotonic()
        # node-a takes the new CA while node-b, down, still has its old pod.
        eventually(lambda: world.nodes["node-a"].read(CA_FILE).count(b"BEGIN CERTIFICATE") == 2, "node-a to trust both CA generations", 90, every=0.5, detail=world.kubelet.logs)
        print(f"node-a trusted the new CA {time.monotonic() - started:.1f} s into the up, node-b down")
        assert thread.is_alive(), "up waits for node-b"
        assert world.nodes["node-b"].read(CA_FILE).count(b"BEGIN CERTIFICATE") == 1
    finally:
        world.kubelet.up("node-b")
        thread.join(400)
    up = result["up"]
    assert up.code == 0, up.text + world.kubelet.logs()
    assert ("node node-b is not Ready: its node-trust pod cannot take a change of this run (a CA rotation, say) "
            "until the node is back") in up.text, up.text
    assert world.nodes["node-b"].read(CA_FILE).count(b"BEGIN CERTIFICATE") == 2
    push(world)
    for node in world.nodes.values():
        assert world.pull(node).returncode == 0


def test_a_node_whose_create_fails_is_named_in_an_event_and_given_back_by_destroy(world):
    world.join("node-c", prepare=BROKEN_TRUST_STORE)
    node = world.nodes["node-c"]
    # The create changed the node (its hosts entry) before it failed, and is tried again.
    eventually(lambda: b"registry-node-trust" in node.read("/etc/hosts"), "node-c's create to change it", 120, every=0.5, detail=world.kubelet.logs)
    events = eventually(lambda: [e for e in world.cluster.api.items(f"/api/v1/namespaces/{TRUST_NAMESPACE}/events")
                                 if e["reason"] == "NodeNotTrusted"], "an event naming node-c", 60, every=0.5, detail=world.kubelet.logs)
    assert "node node-c: the node program failed" in events[0]["message"]
    assert "update-ca-certificates" in events[0]["message"]
    assert not pod_ready(world.trust_pods()["node-c"])
    destroy = world.project.destroy()
    assert destroy.code == 0, destroy.text + world.kubelet.logs()
    given_back(world)


def test_up_after_a_destroy_that_failed_on_a_node_that_is_down_refuses_then_brings_trust_back(world):
    node = world.nodes["node-c"]
    node.sh("rm /usr/local/sbin/update-ca-certificates")
    world.before["node-c"] = node.snapshot()
    world.cluster.add_volume()  # the first claim's volume is kept (Retain) with its data
    up = world.project.up()
    assert up.code == 0, up.text + world.kubelet.logs()
    world.kubelet.down("node-b")
    eventually(lambda: not pod_ready(world.trust_pods()["node-b"]), "node-b's pod NotReady", 90, every=0.5)
    destroy = world.project.destroy()
    assert destroy.code != 0 and "node node-b is not ready" in destroy.text, destroy.text
    given_back(world, "node-a", "node-c")

    up = world.project.up()
    assert up.code != 0
    assert (f"its DaemonSet {TRUST_NAMESPACE}/{NODE_TRUST_NAME} is still being deleted by a pulumi destroy that "
            "did not finish (held by the node(s) that are not ready: node-b)") in up.text, up.text

    world.kubelet.up("node-b")
    eventually(lambda: world.daemon_set() is None, "the DaemonSet to finish its deletion", 120, every=0.5, detail=world.kubelet.logs)
    given_back(world)
    world.cluster.add_volume()
    up = world.project.up()
    assert up.code == 0, up.text + world.kubelet.logs()
    push(world)
    for node in world.nodes.values():
        assert world.pull(node).returncode == 0


def test_a_namespace_deleted_by_hand_gives_every_node_back_and_the_next_up_brings_trust_back(world):
    world.cluster.api.delete(f"/api/v1/namespaces/{TRUST_NAMESPACE}")
    eventually(lambda: world.cluster.api.find(f"/api/v1/namespaces/{TRUST_NAMESPACE}") is None, "the namespace to go", 180, every=0.5, detail=world.kubelet.logs)
    given_back(world)
    up = world.project.up()
    assert up.code == 0, up.text + world.kubelet.logs()
    push(world)
    for node in world.nodes.values():
        assert world.pull(node).returncode == 0
    destroy = world.project.destroy()
    assert destroy.code == 0, destroy.text + world.kubelet.logs()
    given_back(world)
