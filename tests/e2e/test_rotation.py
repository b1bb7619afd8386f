"""Day two, the real layer: a whole `pulumi up` in the order the program's dependencies
force, the node commands over real SSH first, then the pods roll (the real registry
restarted from the new Secrets), with skopeo on two nodes pulling by name before,
during and after a CA rotation and a password replacement."""

from __future__ import annotations

import base64
import http.client
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from tests.support.nodes import NEEDED, Node, NodeFactory, Snapshot, diff, simulated_nodes
from tests.support.oci import read_image, write_image
from tests.support.registry_server import REGISTRY_TOOL, PodSource, Registry, login_authfile
from tests.support.rotation import IMAGE, cas, commands, config, replace_password, up
from tests.support.stack import ProviderState, StackRun
from tests.support.trust import WITH_CONFIG_PATH, store_file_names

# ---- the real layer ----------------------------------------------------------------------------


TOOLS = {**NEEDED, **REGISTRY_TOOL, "skopeo": "skopeo"}


@dataclass
class World:
    """Two nodes (a: the system store, b: containerd's config_path) through every
    step of a first `up` and two rotations, with the engine's state as it goes."""

    root: Path
    factory: NodeFactory
    nodes: list[Node]
    initial: dict[Node, Snapshot]
    state: ProviderState
    registry: Registry | None = None
    # The run before the current step's, once a test has made one.
    last: StackRun | None = None

    def config(self, generation: int) -> dict:
        nodes = [{"name": f"n{n.index}", "host": n.address, "port": n.port} for n in self.nodes]
        return config(self.factory.private_key, nodes, generation)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("rotation")
    root.chmod(0o755)
    with simulated_nodes(TOOLS) as factory:
        a = factory.start()  # containerd without config_path: the system store
        b = factory.start(WITH_CONFIG_PATH)
        world = World(root=root, factory=factory, nodes=[a, b], initial={n: n.snapshot() for n in (a, b)},
                      state=ProviderState())
        try:
            yield world
        finally:
            if world.registry:
                world.registry.stop()


def authfile(world, run: StackRun) -> Path:
    pull = run.one("kubernetes:core/v1:Secret", "registry-pull-default").inputs["stringData"][".dockerconfigjson"]
    path = world.root / f"auth-{len(list(world.root.glob('auth-*')))}.json"
    path.write_text(pull)
    path.chmod(0o644)
    return path


def pulls(world, run: StackRun) -> None:
    """Every node pulls the image by name, trusting what it trusts now."""
    auth = authfile(world, run)
    for node in world.nodes:
        out = world.root / f"pulled-{node.index}"
        result = node.inside("skopeo", "--command-timeout", "60s", "copy", "--src-authfile", str(auth),
                             f"docker://image-registry:5000/{IMAGE}", f"oci:{out}:v1", check=False, timeout=120)
        assert result.returncode == 0, f"node {node.index}: {result.stderr}"
        assert read_image(out)[0] == world.pushed
    # Node a's containerd has no config_path: it trusts the system store alone (node b's is left alone).
    system_store_verifies(world.nodes[0], world.registry)


def system_store_verifies(node, registry: Registry) -> None:
    """What containerd without config_path relies on: the node's system bundle verifies the serving certificate."""
    leaf = x509.load_pem_x509_certificate(registry.secrets["registry-tls"]["tls.crt"].encode())
    store = Store(x509.load_pem_x509_certificates(node.read("/etc/ssl/certs/ca-certificates.crt")))
    PolicyBuilder().store(store).build_server_verifier(x509.DNSName("image-registry")).verify(leaf, [])


def roll_pods(world, run: StackRun) -> None:
    if world.registry:
        world.registry.stop()
    world.registry = Registry(PodSource.from_run(run), world.root / "registry").start()


def update_nodes(world, run: StackRun, between=None) -> None:
    by_host = {c["connection"]["host"]: c for c in commands(run).values()}
    for node in world.nodes:
        result = node.run_command(by_host[node.address], "create")
        assert result.returncode == 0, result.stderr
        if between:
            between()


def test_first_up_then_two_rotations_never_break_a_pull_on_any_node(world):
    state = world.state
    first = up(world.config(1), state)
    update_nodes(world, first)
    roll_pods(world, first)
    layout = world.root / "image"
    write_image(layout, "v1", layers=2)
    world.pushed, _ = read_image(layout)
    push = world.nodes[0].inside("skopeo", "--command-timeout", "60s", "copy", "--dest-authfile",
                                    str(login_authfile(first, world.root / "login.json")), f"oci:{layout}:v1",
                                    f"docker://image-registry:5000/{IMAGE}", check=False, timeout=120)
    assert push.returncode == 0, push.stderr
    pulls(world, first)

    previous = first
    for generation in (2, 3):
        run = up(world.config(generation), state)
        # The order the program's dependencies force: each node updates while
        # the old pods still serve, and pulls keep working after each one.
        update_nodes(world, run, between=lambda previous=previous: pulls(world, previous))
        roll_pods(world, run)
        pulls(world, run)
        for node, wanted in zip(world.nodes, (store_file_names(run.outputs["caCertificate"]), []), strict=True):
            anchors = sorted(p.name for p in node.path("/usr/local/share/ca-certificates").glob("registry-node-trust-*"))
            assert anchors == sorted(wanted), "one file per trusted CA where the system store is needed, no other"
        previous = run

    dropped = x509.load_pem_x509_certificate(cas(first)["registry-ca"].encode())
    for node in world.nodes:
        held = x509.load_pem_x509_certificates(node.read("/etc/ssl/certs/ca-certificates.crt"))
        assert dropped not in held, "generation 1 is no longer trusted after generation 3"
        certs_d = x509.load_pem_x509_certificates(node.read("/etc/containers/certs.d/image-registry:5000/ca.crt"))
        assert dropped not in certs_d and len(certs_d) == 2
    # A server still on a generation-1 certificate is now refused by every node.
    roll_pods(world, first)
    for node in world.nodes:
        result = node.inside("skopeo", "--command-timeout", "30s", "inspect", "--authfile", str(authfile(world, first)),
                             f"docker://image-registry:5000/{IMAGE}", check=False, timeout=60)
        assert result.returncode != 0 and "x509" in result.stderr, result.stderr
    roll_pods(world, previous)
    world.last = previous


def test_a_replaced_password_gets_401_and_the_new_one_200_on_the_real_registry(world):
    state, before = world.state, world.last
    replace_password(state, before, "admin")
    after = up(world.config(3), state)
    roll_pods(world, after)
    registry = world.registry
    context = ssl.create_default_context(cadata=registry.ca_pem)
    expected = [
        (f"admin:{before.outputs['password']}", 401),
        (f"admin:{after.outputs['password']}", 200),
        (f"ci:{after.outputs['credentials']['ci']}", 200),
    ]
    assert after.outputs["credentials"]["ci"] == before.outputs["credentials"]["ci"]
    for credentials, status in expected:
        connection = http.client.HTTPSConnection(registry.host, registry.port, context=context, timeout=10)
        connection.request("GET", "/v2/", headers={"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()})
        assert connection.getresponse().status == status, credentials.split(":")[0]
        connection.close()
    pulls(world, after)  # with the pull secret as it is now


def test_destroy_after_rotations_gives_every_node_back_byte_for_byte(world):
    for command in commands(world.last).values():
        node = next(n for n in world.nodes if n.address == command["connection"]["host"])
        result = node.run_command(command, "delete")
        assert result.returncode == 0, result.stderr
    for node in world.nodes:
        assert diff(world.initial[node], node.snapshot()) == []
