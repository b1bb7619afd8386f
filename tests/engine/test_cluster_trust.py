"""nodeTrust cluster: no SSH; a DaemonSet runs the node program on every node, present and future.

The real Pulumi CLI and pulumi-kubernetes create and delete the DaemonSet, its
RBAC, its ConfigMap and its namespace in a real API server, whose controller
manager and scheduler make and place its pods. The pods run on simulated nodes
(tests/support/nodes.py) through TestKubelet (tests/support/kubelet.py, which
says why it stands in for kubelet): the container's command, with the node's
root at /host, as a kubelet would start it, with the service account token the
API server issues, under the capabilities the pod asks for. The registry runs
from the Deployment and Secrets the API server holds, on the Service's address.

The tests share one stack and run in file order: up, a pull by name on every
node, nodes that join later (one of them with its first run killed), a pod
restarted, a CA rotation under pulls, a node that is NotReady at destroy, and
the destroy that gives every node back.
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from registry.cluster_trust import DELETE_TIMEOUT_SECONDS
from registry.names import NODE_TRUST_NAME
from registry.node_script import NodeTrustParams, create_script, delete_script, program, remote_command
from tests.support.engine import toolchain_dir
from tests.support.engine.trust_world import (
    CLUSTER_IP,
    ENDPOINT,
    IMAGE,
    NAME,
    NAMESPACE,
    TOOLS,
    TRUST_NAMESPACE,
    dev_config,
    pod_ready,
    trust_world,
)
from tests.support.nodes import diff, require_tools
from tests.support.oci import write_image
from tests.support.polling import eventually
from tests.support.trust import WITH_CONFIG_PATH

OTHER_STACK = "someone/else/stack"


def ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    bin_dir = toolchain_dir()
    require_tools(TOOLS)
    root = tmp_path_factory.mktemp("cluster-trust")
    root.chmod(0o755)
    with trust_world(bin_dir, root) as w:
        # containerd with config_path (containerd 2's default), which reads the registry's
        # CA per pull; the nodes that join later have an older containerd without it.
        for name in ("node-a", "node-b"):
            w.join(name, prepare=WITH_CONFIG_PATH)
        # No SSH key, no node list: the committed dev stack's config.
        assert dev_config() == {"nodeTrust": "cluster"}
        w.configure()
        try:
            yield w
        finally:
            if w.kubelet.errors:
                print("test kubelet errors:", *w.kubelet.errors[-5:], sep="\n")


def test_up_without_ssh_gives_every_node_trust_and_the_name_and_a_pull_by_name_works_on_each(world):
    up = world.project.up()
    assert up.code == 0, up.text + world.kubelet.logs()
    ds = world.daemon_set()
    assert ds["status"]["numberReady"] == ds["status"]["desiredNumberScheduled"] == 3, ds["status"]
    namespace = world.cluster.api.get(f"/api/v1/namespaces/{TRUST_NAMESPACE}")["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "privileged"
    # The registry's own pods run under the restricted level, which the API server enforces.
    assert world.cluster.api.get(f"/api/v1/namespaces/{NAMESPACE}")["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"] == "restricted"
    world.password = world.project.outputs(show_secrets=True)["password"]
    world.start_registry()
    layout = world.root / "layout"
    write_image(layout, "v1", layers=2, seed=b"cluster")
    push = world.nodes["node-a"].inside("skopeo", "copy", "--dest-creds", f"admin:{world.password}",
                                         f"oci:{layout}:v1", f"docker://{ENDPOINT}/{IMAGE}", check=False, timeout=120)
    ok(push)
    for node in world.nodes.values():
        ok(world.pull(node))


def test_a_second_up_changes_nothing(world):
    preview = world.project.preview(expect_no_changes=True)
    assert preview.code == 0, preview.text


def test_a_node_that_joins_after_up_trusts_the_registry_and_pulls_by_name(world):
    created = world.join("node-c")
    node = world.nodes["node-c"]
    eventually(lambda: world.pull(node, timeout=30).returncode == 0, "node-c to pull by name", 120, detail=world.kubelet.logs)
    world.timings["join"] = time.monotonic() - created
    print(f"node joined to pull by name: {world.timings['join']:.1f} s")


def test_a_first_run_killed_midway_is_finished_by_the_next(world):
    world.join("node-d")
    node = world.nodes["node-d"]
    state = node.path("/var/lib/registry-node-trust")

    def killed_midway() -> bool:
        pids = world.kubelet.container_pids(NODE_TRUST_NAME, "node-d")
        if pids and state.exists():
            subprocess.run(["kill", "-KILL", "--", f"-{pids[0]}"], check=False)
            return True
        return False

    eventually(killed_midway, "node-d's first run to be under way", 120, every=0.01, detail=world.kubelet.logs)
    eventually(lambda: world.pull(node, timeout=30).returncode == 0, "node-d to pull by name", 120, every=0.5,
               detail=world.kubelet.logs)
    pod = world.trust_pods()["node-d"]
    assert pod["status"]["containerStatuses"][0]["restartCount"] >= 1, pod["status"]


def test_a_pod_deleted_or_rolled_leaves_its_node_as_it_is(world):
    node = world.nodes["node-a"]
    trusted, trusted_files = node.snapshot(), node.snapshot(extra=())
    restarts = node.restarts()
    old = world.trust_pods()["node-a"]
    world.cluster.api.delete(f"/api/v1/namespaces/{TRUST_NAMESPACE}/pods/{old['metadata']['name']}")

    def replaced() -> bool:
        new = world.trust_pods().get("node-a")
        if new and new["metadata"]["uid"] != old["metadata"]["uid"] and pod_ready(new):
            return True
        # While the new pod's run rewrites its own state (owners.new, then a rename), the node's
        # files stay as they are; the state is compared once the run is over, below.
        assert diff(trusted_files, node.snapshot(extra=())) == [], "the node changed while its pod was replaced"
        return False

    eventually(replaced, "node-a's new pod to be ready", 60, detail=world.kubelet.logs)
    assert diff(trusted, node.snapshot()) == []
    assert node.restarts() == restarts
    ok(world.pull(node))


def test_a_ca_rotation_never_breaks_a_pull_and_restarts_no_runtime(world):
    restarts = {name: node.restarts() for name, node in world.nodes.items()}
    failures: list[str] = []
    stop = threading.Event()

    def pull_all_the_time():
        while not stop.is_set():
            for name, node in world.nodes.items():
                result = world.pull(node)
                if result.returncode != 0:
                    failures.append(f"{name}: {result.stderr.strip()}")

    world.stack.configure(caGeneration=2)
    puller = threading.Thread(target=pull_all_the_time)
    puller.start()
    try:
        # While the DaemonSet rolls, every node keeps trusting the certificate served now.
        up = world.project.up()
        assert up.code == 0, up.text + world.kubelet.logs()
    finally:
        stop.set()
        puller.join()
    assert failures == []
    # The Deployment rolled last, to the new certificate: the registry restarts with the
    # Secrets the cluster holds now, and every node trusts what it serves.
    world.start_registry()
    assert world.registry.ca_pem.count("BEGIN CERTIFICATE") == 2
    for name, node in world.nodes.items():
        ok(world.pull(node))
        if name in ("node-a", "node-b"):
            assert node.restarts() == restarts[name] == [], f"{name}: content changes restart no container runtime"
        else:
            # Without config_path containerd trusts the system store, which it reads only at
            # start: a new CA needs one restart (docs/operations.md, rotating the CA).
            assert node.restarts() == [*restarts[name], "restart containerd"], name


def test_an_ssh_owned_entry_of_another_stack_on_the_same_node_is_kept(world):
    """Another stack trusts the same registry on node-b over SSH (an operator's second stack, say)."""
    node = world.nodes["node-b"]
    ca = world.project.outputs()["caCertificate"]
    params = NodeTrustParams(hostname=NAME, port=5000, stack=OTHER_STACK, entry="node-b")
    world.other = (node, params)
    ok(node.ssh(remote_command(create_script(params, CLUSTER_IP, ca), "root"), stdin=program()))


def test_a_node_not_ready_at_destroy_fails_it_in_bounded_time_and_the_next_destroy_finishes(world):
    world.kubelet.down("node-c")
    # The node controller (kube-controller-manager) marks the pods of a NotReady node so.
    eventually(lambda: not pod_ready(world.trust_pods()["node-c"]), "the node controller to mark node-c's pod NotReady",
               90, every=0.5)
    started = time.monotonic()
    destroy = world.project.destroy()
    elapsed = time.monotonic() - started
    print(f"destroy with node-c NotReady failed after {elapsed:.0f} s")
    assert destroy.code != 0
    assert elapsed < DELETE_TIMEOUT_SECONDS + 60
    assert "registry-node-daemon-set" in destroy.text and "node node-c is not ready" in destroy.text, destroy.text
    # The other nodes were given back meanwhile.
    for name in ("node-a", "node-d"):
        assert diff(world.before[name], world.nodes[name].snapshot()) == [], name
    world.kubelet.up("node-c")


def test_destroy_gives_every_node_back_byte_for_byte_before_it_returns(world):
    started = time.monotonic()
    destroy = world.project.destroy()
    print(f"destroy of {len(world.nodes)} nodes: {time.monotonic() - started:.1f} s")
    assert destroy.code == 0, destroy.text + world.kubelet.logs()
    assert world.cluster.api.find(f"/api/v1/namespaces/{TRUST_NAMESPACE}/pods") is None or not world.trust_pods()
    for name, node in world.nodes.items():
        if name == "node-b":
            continue
        assert diff(world.before[name], node.snapshot()) == [], name
    # node-b: the other stack's entry is kept, trust and name, until it goes too.
    node, params = world.other
    assert CLUSTER_IP in node.read("/etc/hosts").decode()
    ok(node.ssh(remote_command(delete_script(params), "root"), stdin=program()))
    assert diff(world.before["node-b"], node.snapshot()) == []
