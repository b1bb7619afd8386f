"""Day two: rotating the CA (caGeneration) and one user's password without a broken pull.

The fast layer checks what the program registers across runs (ProviderState
plays the engine's state). The real layer follows a whole `pulumi up` in the
order the program's dependencies force: the node commands over real SSH
first, then the pods roll (the real registry restarted from the new Secrets),
with skopeo on two nodes pulling by name before, during and after.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store

from tests.nodes import NEEDED, diff, make_factory, require_tools
from tests.oci import read_image, write_image
from tests.registry_server import REGISTRY_TOOL, PodSource, Registry
from tests.stack import ProviderState, StackRun, run_stack
from tests.trust import WITH_CONFIG_PATH, store_file_names

COMMAND = "command:remote:Command"
SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
PASSWORD = "random:index/randomPassword:RandomPassword"
CLUSTER_IP = "127.0.10.1"
IMAGE = "day-two/app:v1"


def config(private_key: str = "key", nodes=None, generation: int = 1) -> dict:
    return {
        "serviceCidr": "127.0.0.0/8",
        "clusterIp": CLUSTER_IP,
        "users": ["admin", "ci"],
        "sshPrivateKey": private_key,
        "caGeneration": generation,
        "nodes": nodes if nodes is not None else [
            {"name": "n1", "host": "192.168.56.10"}, {"name": "n2", "host": "192.168.56.11"},
        ],
    }


def up(values: dict, state: ProviderState) -> StackRun:
    run = run_stack(values, state)
    assert run.error is None, run.error
    return run


def cas(run: StackRun) -> dict[str, str]:
    """CA certificate PEM by resource name."""
    return {r.name: r.outputs["certPem"] for r in run.of_type(SELF_SIGNED)}


def bundle(run: StackRun) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(run.outputs["caCertificate"].encode())


def serving(run: StackRun) -> x509.Certificate:
    tls = run.one("kubernetes:core/v1:Secret", "registry-tls").inputs["stringData"]
    return x509.load_pem_x509_certificate(tls["tls.crt"].encode())


def signed_by(leaf: x509.Certificate, ca_pem: str) -> bool:
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    try:
        ca.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm))
    except Exception:
        return False
    return leaf.issuer == ca.subject


def commands(run: StackRun) -> dict[str, dict]:
    return {c.name: c.inputs for c in run.of_type(COMMAND)}


# ---- the fast layer ----------------------------------------------------------------------------


def test_raising_ca_generation_adds_the_new_ca_signs_with_it_and_drops_the_one_before_the_previous():
    state = ProviderState()
    first = up(config(generation=1), state)
    assert set(cas(first)) == {"registry-ca"}, "generation 1 keeps the names of stacks made before rotation"
    second = up(config(generation=2), state)
    third = up(config(generation=3), state)

    assert set(cas(second)) == {"registry-ca", "registry-ca-g2"}
    assert cas(second)["registry-ca"] == cas(first)["registry-ca"], "the previous CA is kept, not re-made"
    assert bundle(second) == [x509.load_pem_x509_certificate(cas(second)[n].encode()) for n in ("registry-ca-g2", "registry-ca")], \
        "clients trust both, newest first"
    assert signed_by(serving(second), cas(second)["registry-ca-g2"])

    assert set(cas(third)) == {"registry-ca-g2", "registry-ca-g3"}
    assert cas(third)["registry-ca-g2"] == cas(second)["registry-ca-g2"]
    assert signed_by(serving(third), cas(third)["registry-ca-g3"])
    assert len(bundle(third)) == 2


def test_a_rotation_updates_every_node_command_in_place_with_both_cas():
    state = ProviderState()
    before = commands(up(config(generation=1), state))
    run = up(config(generation=2), state)
    after = commands(run)
    for name, inputs in after.items():
        assert inputs["triggers"] == before[name]["triggers"], f"{name} would be replaced, not updated"
        assert inputs["create"] != before[name]["create"]
        for pem in cas(run).values():
            assert pem.strip().splitlines()[1] in inputs["create"], "the node gets both CAs"


def test_the_pods_roll_out_only_after_every_node_trusts_the_ca():
    run = up(config(), ProviderState())
    nodes = {c.urn for c in run.of_type(COMMAND)}
    assert len(nodes) == 2
    deployment = run.one("kubernetes:apps/v1:Deployment")
    tls = run.one("kubernetes:core/v1:Secret", "registry-tls")
    assert nodes <= set(deployment.dependencies), "the Deployment waits for the node commands"
    assert nodes <= set(tls.dependencies), "a restarted pod cannot pick up a certificate the nodes do not trust yet"
    service = run.one("kubernetes:core/v1:Service")
    for command in run.of_type(COMMAND):
        assert service.urn in command.dependencies
    # The nodes need the Service's clusterIP and the pods need the nodes: an
    # awaited Service (which waits for ready endpoints, that is pods) would never finish.
    assert service.inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}


def replace_password(state: ProviderState, run: StackRun, user: str) -> None:
    """What `pulumi up --replace <urn>` does to that one resource."""
    del state.by_urn[run.one(PASSWORD, f"registry-{user}-password").urn]


def kubernetes_inputs(run: StackRun) -> dict[str, dict]:
    return {r.name: r.inputs for r in run.resources if r.type.startswith("kubernetes:")}


def htpasswd_lines(run: StackRun) -> dict[str, str]:
    text = run.one("kubernetes:core/v1:Secret", "registry-auth").inputs["stringData"]["htpasswd"]
    return dict(line.split(":", 1) for line in text.splitlines())


@pytest.mark.parametrize("user, changed", [
    ("admin", {"registry-auth", "registry-deployment", "registry-pull-default"}),
    ("ci", {"registry-auth", "registry-deployment"}),
])
def test_replacing_one_password_changes_that_user_alone(user, changed):
    state = ProviderState()
    before = up(config(), state)
    replace_password(state, before, user)
    after = up(config(), state)

    assert after.outputs["credentials"][user] != before.outputs["credentials"][user]
    others = [u for u in ("admin", "ci") if u != user]
    assert all(after.outputs["credentials"][u] == before.outputs["credentials"][u] for u in others)
    old, new = htpasswd_lines(before), htpasswd_lines(after)
    assert [u for u in old if old[u] != new[u]] == [user], "only that user's htpasswd line changes"
    was, now = kubernetes_inputs(before), kubernetes_inputs(after)
    assert {name for name in now if now[name] != was[name]} == changed
    annotations = [run.one("kubernetes:apps/v1:Deployment").inputs["spec"]["template"]["metadata"]["annotations"]
                   for run in (before, after)]
    assert {k for k in annotations[1] if annotations[1][k] != annotations[0][k]} == {"registry.pulumi.com/config-digest"}, \
        "the pods roll once, for the new htpasswd"
    if user == "admin":
        auth = json.loads(now["registry-pull-default"]["stringData"][".dockerconfigjson"])["auths"]
        token = base64.b64decode(auth["image-registry:5000"]["auth"]).decode()
        assert token == f"admin:{after.outputs['password']}", "the pull secret follows its user"


# ---- the real layer ----------------------------------------------------------------------------


TOOLS = {**NEEDED, **REGISTRY_TOOL, "skopeo": "skopeo"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    require_tools(TOOLS)
    root = tmp_path_factory.mktemp("rotation")
    root.chmod(0o755)
    factory = make_factory()
    world = {"root": root, "factory": factory, "registry": None}
    try:
        a = factory.start()  # containerd without config_path: the system store
        b = factory.start(WITH_CONFIG_PATH)
        world.update(nodes=[a, b], initial={n: n.snapshot() for n in (a, b)}, state=ProviderState())
        world["config"] = lambda generation: config(
            factory.private_key, [{"name": f"n{n.index}", "host": n.address, "port": n.port} for n in (a, b)], generation,
        )
        yield world
    finally:
        if world["registry"]:
            world["registry"].stop()
        factory.close()


def authfile(world, run: StackRun) -> Path:
    pull = run.one("kubernetes:core/v1:Secret", "registry-pull-default").inputs["stringData"][".dockerconfigjson"]
    path = world["root"] / f"auth-{len(list(world['root'].glob('auth-*')))}.json"
    path.write_text(pull)
    path.chmod(0o644)
    return path


def pulls(world, run: StackRun) -> None:
    """Every node pulls the image by name, trusting what it trusts now."""
    auth = authfile(world, run)
    for node in world["nodes"]:
        out = world["root"] / f"pulled-{node.index}"
        result = node.inside("skopeo", "--command-timeout", "60s", "copy", "--src-authfile", str(auth),
                             f"docker://image-registry:5000/{IMAGE}", f"oci:{out}:v1", check=False, timeout=120)
        assert result.returncode == 0, f"node {node.index}: {result.stderr}"
        assert read_image(out)[0] == world["pushed"]
        system_store_verifies(node, world["registry"])


def system_store_verifies(node, registry: Registry) -> None:
    """What containerd without config_path relies on: the node's system bundle verifies the serving certificate."""
    leaf = x509.load_pem_x509_certificate(registry.secrets["registry-tls"]["tls.crt"].encode())
    store = Store(x509.load_pem_x509_certificates(node.read("/etc/ssl/certs/ca-certificates.crt")))
    PolicyBuilder().store(store).build_server_verifier(x509.DNSName("image-registry")).verify(leaf, [])


def roll_pods(world, run: StackRun) -> None:
    if world["registry"]:
        world["registry"].stop()
    world["registry"] = Registry(PodSource.from_run(run), world["root"] / "registry").start()


def update_nodes(world, run: StackRun, between=None) -> None:
    by_host = {c["connection"]["host"]: c for c in commands(run).values()}
    for node in world["nodes"]:
        result = node.run_command(by_host[node.address], "create")
        assert result.returncode == 0, result.stderr
        if between:
            between()


def test_first_up_then_two_rotations_never_break_a_pull_on_any_node(world):
    state = world["state"]
    first = up(world["config"](1), state)
    update_nodes(world, first)
    roll_pods(world, first)
    layout = world["root"] / "image"
    write_image(layout, "v1", layers=2)
    world["pushed"], _ = read_image(layout)
    push = world["nodes"][0].inside("skopeo", "--command-timeout", "60s", "copy", "--dest-authfile",
                                    str(authfile(world, first)), f"oci:{layout}:v1",
                                    f"docker://image-registry:5000/{IMAGE}", check=False, timeout=120)
    assert push.returncode == 0, push.stderr
    pulls(world, first)

    previous = first
    for generation in (2, 3):
        run = up(world["config"](generation), state)
        # The order the program's dependencies force: each node updates while
        # the old pods still serve, and pulls keep working after each one.
        update_nodes(world, run, between=lambda: pulls(world, previous))
        roll_pods(world, run)
        pulls(world, run)
        for node in world["nodes"]:
            anchors = sorted(p.name for p in node.path("/usr/local/share/ca-certificates").glob("registry-node-trust-*"))
            assert anchors == sorted(store_file_names(run.outputs["caCertificate"])), "one file per trusted CA, no other"
        previous = run

    dropped = x509.load_pem_x509_certificate(cas(first)["registry-ca"].encode())
    for node in world["nodes"]:
        held = x509.load_pem_x509_certificates(node.read("/etc/ssl/certs/ca-certificates.crt"))
        assert dropped not in held, "generation 1 is no longer trusted after generation 3"
        certs_d = x509.load_pem_x509_certificates(node.read("/etc/containers/certs.d/image-registry:5000/ca.crt"))
        assert dropped not in certs_d and len(certs_d) == 2
    # A server still on a generation-1 certificate is now refused by every node.
    roll_pods(world, first)
    for node in world["nodes"]:
        result = node.inside("skopeo", "--command-timeout", "30s", "inspect", "--authfile", str(authfile(world, first)),
                             f"docker://image-registry:5000/{IMAGE}", check=False, timeout=60)
        assert result.returncode != 0 and "x509" in result.stderr, result.stderr
    roll_pods(world, previous)
    world["last"] = previous


def test_a_replaced_password_gets_401_and_the_new_one_200_on_the_real_registry(world):
    state, before = world["state"], world["last"]
    replace_password(state, before, "admin")
    after = up(world["config"](3), state)
    roll_pods(world, after)
    registry = world["registry"]
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
    for command in commands(world["last"]).values():
        node = next(n for n in world["nodes"] if n.address == command["connection"]["host"])
        result = node.run_command(command, "delete")
        assert result.returncode == 0, result.stderr
    for node in world["nodes"]:
        assert diff(world["initial"][node], node.snapshot()) == []
