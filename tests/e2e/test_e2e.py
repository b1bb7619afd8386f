"""End to end with the real parts: the program's registry, its node commands over SSH,
then skopeo and containerd inside the nodes push and pull by name over TLS with a password.

Node A runs containerd without config_path (trust through the system store),
node B with config_path (hosts.toml); node C never runs our command.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.constants import CLUSTER_IP
from tests.support.deployed import deployed
from tests.support.nodes import NEEDED, Node, Snapshot, diff, simulated_nodes
from tests.support.oci import read_image, write_image
from tests.support.polling import eventually
from tests.support.registry_server import REGISTRY_TOOL, Registry
from tests.support.stack import StackRun
from tests.support.trust import WITH_CONFIG_PATH

E2E_TOOLS = {**NEEDED, **REGISTRY_TOOL, "skopeo": "skopeo", "containerd": "containerd", "ctr": "containerd"}
IMAGE = "e2e/hello:v1"


@dataclass
class World:
    """Two nodes that trust the registry (a: the system store, b: containerd's
    config_path), one that does not (c), and the registry the program's run made."""

    a: Node
    b: Node
    c: Node
    run: StackRun
    registry: Registry
    root: Path
    commands: dict[str, dict]  # node address -> its command's inputs
    authfile: Path  # the pull secret's .dockerconfigjson: the pull-only user
    login: Path  # the login outputs: a pusher
    initial: dict[Node, Snapshot]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    root.chmod(0o755)
    with simulated_nodes(E2E_TOOLS) as factory:
        a = factory.start()
        b = factory.start(WITH_CONFIG_PATH)
        c = factory.start()
        initial = {node: node.snapshot() for node in (a, b)}
        with deployed(root, factory, [a, b], {"users": ["admin", "ci"]}) as it:
            yield World(a=a, b=b, c=c, run=it.run, registry=it.registry, root=root, commands=it.commands,
                        authfile=it.authfile, login=it.login, initial=initial)


def skopeo(node, *args, timeout=120):
    return node.inside("skopeo", "--command-timeout", "60s", *args, check=False, timeout=timeout)


def ref(world):
    return f"docker://{world.run.outputs['endpoint']}/{IMAGE}"


def diff_ids(node, world, authfile=None):
    """The image's uncompressed layer digests, as the registry serves its config."""
    result = skopeo(node, "inspect", "--config", "--authfile", str(authfile or world.authfile), ref(world))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["rootfs"]["diff_ids"]


@pytest.fixture(scope="module")
def pushed(world):
    """Node A pushes a three-layer image by name, with the login outputs as its credentials."""
    layout = world.root / "image"
    write_image(layout, "v1", layers=3, layer_bytes=64 * 1024)
    result = skopeo(world.a, "copy", "--dest-authfile", str(world.login), f"oci:{layout}:v1", ref(world))
    assert result.returncode == 0, result.stderr
    expected, _ = read_image(layout)
    return expected


def test_node_pushes_by_name_over_tls_with_the_password_output(world, pushed):
    # skopeo compresses layers on the way: the uncompressed digests are what must match.
    assert diff_ids(world.a, world) == pushed


def test_other_node_pulls_what_was_pushed(world, pushed):
    out = world.root / "pulled-b"
    result = skopeo(world.b, "copy", "--src-authfile", str(world.authfile), ref(world), f"oci:{out}:v1")
    assert result.returncode == 0, result.stderr
    config_ids, content_ids = read_image(out)
    assert config_ids == pushed and content_ids == pushed, "every layer arrives with the bytes that were pushed"


def test_metrics_count_the_push_on_their_own_port(world, pushed):
    """The registry's debug server, as the Deployment configures it, serves Prometheus text."""
    registry = world.registry
    connection = http.client.HTTPConnection(registry.host, registry.metrics_port, timeout=10)
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    text = response.read().decode()
    assert response.status == 200
    puts = [line for line in text.splitlines()
            if line.startswith("registry_http_requests_total{") and 'method="put"' in line]
    assert puts and all(float(line.rsplit(" ", 1)[1]) > 0 for line in puts), text[:2000]


def test_containerd_in_a_node_pulls_by_name_through_hosts_toml_with_the_pull_secret(world, pushed):
    node = world.b
    state = world.root / "containerd"
    for sub in ("root", "state"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    config = state / "config.toml"
    config.write_text('version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n')
    socket_path = state / "containerd.sock"
    daemon = subprocess.Popen(
        ["nsenter", "--mount", "-t", str(node.process.pid), "containerd", "--config", str(config),
         "--root", str(state / "root"), "--state", str(state / "state"), "--address", str(socket_path)],
        stdout=open(state / "log", "wb"), stderr=subprocess.STDOUT,
    )
    try:

        def listening() -> bool:
            assert daemon.poll() is None, (state / "log").read_text()
            return socket_path.exists()

        eventually(listening, "containerd's socket", 20, every=0.1, detail=lambda: (state / "log").read_text())
        # As kubelet asks containerd to pull: with the pull secret's login, a pull-only user.
        auths = json.loads(world.authfile.read_text())["auths"]
        user, password = base64.b64decode(auths[world.run.outputs["endpoint"]]["auth"]).decode().split(":", 1)
        assert user == world.run.outputs["pullUsername"]
        # ctr has no credentials file; this throwaway password only ever goes to loopback.
        result = node.inside(
            "ctr", "--address", str(socket_path), "images", "pull", "--hosts-dir", "/etc/containerd/certs.d",
            "--user", f"{user}:{password}", f"{world.run.outputs['endpoint']}/{IMAGE}", check=False, timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        listing = node.inside("ctr", "--address", str(socket_path), "images", "ls", "-q").stdout
        assert f"{world.run.outputs['endpoint']}/{IMAGE}" in listing
    finally:
        daemon.terminate()
        daemon.wait(10)


def test_wrong_password_gets_401(world, pushed):
    wrong = world.root / "wrong-auth.json"
    endpoint = world.run.outputs["endpoint"]
    token = base64.b64encode(b"admin:not-the-password").decode()
    wrong.write_text(json.dumps({"auths": {endpoint: {"auth": token}}}))
    result = skopeo(world.a, "inspect", "--authfile", str(wrong), ref(world))
    assert result.returncode != 0 and "unauthorized" in result.stderr.lower(), result.stderr
    registry = world.registry
    context = ssl.create_default_context(cadata=registry.ca_pem)
    for credentials, status in ((f"admin:{world.run.outputs['password']}", 200), ("admin:not-the-password", 401), (None, 401)):
        connection = http.client.HTTPSConnection(registry.host, registry.port, context=context, timeout=10)
        headers = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()} if credentials else {}
        connection.request("GET", "/v2/", headers=headers)
        assert connection.getresponse().status == status
        connection.close()


def test_every_user_can_log_in(world, pushed):
    registry = world.registry
    context = ssl.create_default_context(cadata=registry.ca_pem)
    for user, password in world.run.outputs["credentials"].items():
        connection = http.client.HTTPSConnection(registry.host, registry.port, context=context, timeout=10)
        connection.request("GET", "/v2/", headers={"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()})
        assert connection.getresponse().status == 200, user
        connection.close()


def assert_untrusted_even_when_resolved(node, world):
    """Given the name by hand, as the old guide did, but not our CA: TLS must refuse."""
    original = node.read("/etc/hosts")
    node.write("/etc/hosts", original + f"{CLUSTER_IP} image-registry\n".encode())
    try:
        result = skopeo(node, "inspect", "--authfile", str(world.authfile), ref(world))
        assert result.returncode != 0 and "x509: certificate signed by unknown authority" in result.stderr, result.stderr
    finally:
        node.write("/etc/hosts", original)


def test_node_that_did_not_run_the_command_fails_with_x509(world, pushed):
    node = world.c
    result = skopeo(node, "inspect", "--authfile", str(world.authfile), ref(world))
    assert result.returncode != 0 and "no such host" in result.stderr, result.stderr
    assert_untrusted_even_when_resolved(node, world)


def test_image_survives_a_registry_restart_on_the_same_storage(world, pushed):
    registry = world.registry
    registry.stop()
    registry.start()
    assert diff_ids(world.b, world) == pushed


def test_after_delete_a_node_neither_resolves_nor_trusts_and_is_byte_identical(world, pushed):
    node = world.a
    result = node.run_command(world.commands[node.address], "delete")
    assert result.returncode == 0, result.stderr
    assert diff(world.initial[node], node.snapshot()) == []
    result = skopeo(node, "inspect", "--authfile", str(world.authfile), ref(world))
    assert result.returncode != 0 and "no such host" in result.stderr, result.stderr
    assert_untrusted_even_when_resolved(node, world)
    assert diff(world.initial[node], node.snapshot()) == []
