"""The node commands, as the program builds them, run over real OpenSSH on simulated nodes.

Each case checks the exit status and every byte, mode and owner under /etc and
/usr/local (and our state folder) before, after create, after a second create
and after delete, plus whether the CA is trusted and which restarts were asked for.
"""

import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store

from registry.node_script import CREATE_STEPS, NodeTrustParams, create_script, remote_command
from registry.node_script import program as program_text
from tests.nodes import NEEDED, diff, make_factory, require_tools
from tests.stack import run_stack

CLUSTER_IP = "127.0.10.1"
# The stack the mock layer runs the program as; node commands record it as their owner.
STACK = "organization/registry/test"
NAME = "image-registry"
ID = "image-registry:5000"
CA_FILE = "/usr/local/share/ca-certificates/registry-node-trust-image-registry-5000.crt"
BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
WITH_CONFIG_PATH = (
    "mkdir -p /etc/containerd && cat > /etc/containerd/config.toml <<'EOF'\n"
    "version = 2\n"
    "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
    "  config_path = \"/etc/containerd/certs.d\"\n"
    "EOF\n"
)
DEBIAN_CONTAINERD = "cp /usr/share/doc/containerd/examples/config.toml /etc/containerd/config.toml 2>/dev/null || true\n"


@pytest.fixture(scope="module")
def nodes():
    require_tools(NEEDED)
    factory = make_factory()
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def program(nodes):
    """The program's own commands, one per kind of node connection we test."""
    config = {
        "serviceCidr": "127.0.0.0/8",
        "clusterIp": CLUSTER_IP,
        "sshPrivateKey": nodes.private_key,
        "nodes": [
            {"name": "root", "host": "127.0.20.250", "port": 2222},
            {"name": "deploy", "host": "127.0.20.251", "port": 2222, "user": "deploy"},
            {"name": "docker", "host": "127.0.20.252", "port": 2222, "runtime": "docker"},
        ],
    }
    run = run_stack(config)
    assert run.error is None, run.error
    commands = {c.name.removeprefix("registry-node-"): c.inputs for c in run.of_type("command:remote:Command")}
    tls = run.one("kubernetes:core/v1:Secret", "registry-tls").inputs["stringData"]
    return {
        "commands": commands,
        "ca": run.outputs["caCertificate"],
        "leaf": x509.load_pem_x509_certificate(tls["tls.crt"].encode()),
    }


PROGRAM = program_text()


def run(node, command, **kwargs):
    """A node command over SSH, the program on its stdin, as pulumi-command sends it."""
    return node.ssh(command, stdin=PROGRAM, **kwargs)


def create(program, who="root"):
    return program["commands"][who]["create"]


def delete(program, who="root"):
    return program["commands"][who]["delete"]


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def failed(result, *phrases):
    assert result.returncode != 0, f"expected a failure, got exit 0\nstderr: {result.stderr}"
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr
    return result


def ca_in_bundle(node, program) -> bool:
    ca = x509.load_pem_x509_certificate(program["ca"].encode())
    bundle = x509.load_pem_x509_certificates(node.read(BUNDLE))
    return any(c.public_bytes(serialization.Encoding.DER) == ca.public_bytes(serialization.Encoding.DER) for c in bundle)


def assert_trusted(node, program):
    """The system store verifies our server certificate for the registry's name."""
    assert ca_in_bundle(node, program)
    store = Store(x509.load_pem_x509_certificates(node.read(BUNDLE)))
    PolicyBuilder().store(store).build_server_verifier(x509.DNSName(NAME)).verify(program["leaf"], [])


def mappings(node, name=NAME) -> list[str]:
    """Active (uncommented) addresses that /etc/hosts gives `name`."""
    found = []
    for line in node.read("/etc/hosts").decode().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) > 1 and name in fields[1:]:
            found.append(fields[0])
    return found


def lifecycle(node, program, who="root"):
    """create, create again, delete, delete again; returns the snapshot after the first create."""
    before = node.snapshot()
    ok(run(node, create(program, who)))
    created = node.snapshot()
    assert diff(before, created), "create changed nothing"
    assert mappings(node) == [CLUSTER_IP]
    assert_trusted(node, program)
    ok(run(node, create(program, who)))
    assert diff(created, node.snapshot()) == [], "a second create must change nothing"
    ok(run(node, delete(program, who)))
    assert diff(before, node.snapshot()) == [], "delete must restore the node byte for byte"
    assert not ca_in_bundle(node, program)
    ok(run(node, delete(program, who)))
    assert diff(before, node.snapshot()) == [], "a second delete must change nothing"
    return created


# ---- the standard node ----------------------------------------------------------------

def test_standard_containerd_node_is_restored_byte_for_byte_without_any_restart(nodes, program):
    node = nodes.start(WITH_CONFIG_PATH)
    before = node.snapshot()
    ok(run(node, create(program)))
    hosts_toml = node.read(f"/etc/containerd/certs.d/{ID}/hosts.toml").decode()
    assert f'server = "https://{ID}"' in hosts_toml
    assert f'[host."https://{ID}"]' in hosts_toml and f'ca = "/etc/containerd/certs.d/{ID}/ca.crt"' in hosts_toml
    assert node.read(f"/etc/containerd/certs.d/{ID}/ca.crt").decode().strip() == program["ca"].strip()
    assert node.read(f"/etc/docker/certs.d/{ID}/ca.crt").decode().strip() == program["ca"].strip()
    assert node.read(f"/etc/containers/certs.d/{ID}/ca.crt").decode().strip() == program["ca"].strip()
    ok(run(node, delete(program)))
    assert diff(before, node.snapshot()) == []
    lifecycle(node, program)
    assert node.restarts() == [], "certs.d and hosts.toml are read on each pull: no restart"


def test_containerd_without_config_path_trusts_the_system_store_and_restarts_once(nodes, program):
    node = nodes.start()  # Debian's containerd config: no registry config_path
    config = node.read("/etc/containerd/config.toml")
    before = node.snapshot()
    ok(run(node, create(program)))
    assert not node.path(f"/etc/containerd/certs.d/{ID}").exists(), "hosts.toml is not read without config_path"
    assert_trusted(node, program)
    assert node.restarts() == ["restart containerd"]
    ok(run(node, create(program)))
    assert node.restarts() == ["restart containerd"], "nothing changed, so no second restart"
    ok(run(node, delete(program)))
    assert node.restarts() == ["restart containerd", "restart containerd"], "forgetting the CA needs a restart too"
    assert node.read("/etc/containerd/config.toml") == config
    assert diff(before, node.snapshot()) == []


def test_containerd_with_old_mirrors_is_never_given_config_path(nodes, program):
    mirrors = (
        "version = 2\n"
        "[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n"
        "  endpoint = [\"https://mirror.example.internal\"]\n"
    )
    node = nodes.start(f"mkdir -p /etc/containerd && printf '%s' '{mirrors}' > /etc/containerd/config.toml\n")
    lifecycle(node, program)
    assert node.read("/etc/containerd/config.toml").decode() == mirrors
    assert node.restarts() == ["restart containerd", "restart containerd"]


def test_hosts_toml_written_by_someone_else_is_put_back(nodes, program):
    theirs = b'server = "https://image-registry:5000"\n[host."https://image-registry:5000"]\n  skip_verify = true\n'
    node = nodes.start(WITH_CONFIG_PATH)
    node.write(f"/etc/containerd/certs.d/{ID}/hosts.toml", theirs)
    lifecycle(node, program)
    assert node.read(f"/etc/containerd/certs.d/{ID}/hosts.toml") == theirs


def test_daemon_json_is_never_touched(nodes, program):
    daemon = b'{\n  "log-driver": "json-file",\n  "insecure-registries": ["old-registry:5000"]\n}\n'
    node = nodes.start(WITH_CONFIG_PATH)
    node.write("/etc/docker/daemon.json", daemon)
    node.sh("chmod 600 /etc/docker/daemon.json")
    ok(run(node, create(program)))
    assert node.read("/etc/docker/daemon.json") == daemon
    ok(run(node, delete(program)))
    lifecycle(node, program)
    assert node.read("/etc/docker/daemon.json") == daemon


# ---- /etc/hosts -------------------------------------------------------------------------

HOSTS_CASES = {
    "no trailing newline": b"127.0.0.1 localhost\n::1 localhost ip6-localhost",
    "empty": b"",
    "crlf": b"127.0.0.1 localhost\r\n10.0.0.9 db\r\n",
    "crlf without trailing newline": b"127.0.0.1 localhost\r\n10.0.0.9 db",
    "unmanaged line maps the name elsewhere": b"127.0.0.1 localhost\n10.96.0.99 image-registry\n10.0.0.9 db\n",
    "unmanaged line maps the name with others": b"127.0.0.1 localhost\n10.96.0.99\tregistry-alias image-registry  other # by hand\n",
    "name inside other names": b"127.0.0.1 localhost\n10.1.1.1 my-image-registry image-registry-old\n",
    "tabs and comments": b"# static table\n127.0.0.1\tlocalhost\n\n# image-registry is set up by pulumi\n",
}


@pytest.mark.parametrize("case", list(HOSTS_CASES))
def test_hosts_file_is_edited_reversibly(nodes, program, case):
    original = HOSTS_CASES[case]
    node = nodes.start()
    node.write("/etc/hosts", original)
    node.sh("chmod 640 /etc/hosts && chown 0:4 /etc/hosts")
    lifecycle(node, program)
    ok(run(node, create(program)))
    created_hosts = node.read("/etc/hosts")
    mode = node.sh("stat -c %a:%u:%g /etc/hosts").stdout.strip()
    assert mode == "640:0:4", "mode and owner are kept"
    assert mappings(node) == [CLUSTER_IP], "the name has exactly one mapping"
    if b"\r\n" in original:
        assert all(line.endswith(b"\r") for line in created_hosts.split(b"\n")[:-1]), "CRLF is kept"
    if b"my-image-registry" in original:
        assert mappings(node, "my-image-registry") == ["10.1.1.1"]
    if b"registry-alias" in original:
        assert mappings(node, "registry-alias") == ["10.96.0.99"] and mappings(node, "other") == ["10.96.0.99"]
    ok(run(node, delete(program)))
    assert node.read("/etc/hosts") == original


def test_symlinked_hosts_is_edited_at_its_target(nodes, program):
    node = nodes.start("mv /etc/hosts /etc/hosts.real && ln -s hosts.real /etc/hosts\n")
    original = node.read("/etc/hosts.real")
    ok(run(node, create(program)))
    assert node.path("/etc/hosts").is_symlink()
    assert CLUSTER_IP.encode() in node.read("/etc/hosts.real")
    ok(run(node, delete(program)))
    assert node.read("/etc/hosts.real") == original
    lifecycle(node, program)


def test_bind_mounted_hosts_is_written_in_place(nodes, program):
    node = nodes.start()
    outside = nodes.base / f"bind-hosts-{node.index}"
    outside.write_bytes(b"127.0.0.1 localhost\n")
    node.sh(f"mount --bind {outside} /etc/hosts")
    rename = node.sh("cp /etc/hosts /etc/.probe && mv /etc/.probe /etc/hosts", check=False)
    assert rename.returncode != 0, "the test needs a hosts file that rename cannot replace"
    node.sh("rm -f /etc/.probe")
    ok(run(node, create(program)))
    assert CLUSTER_IP.encode() in outside.read_bytes(), "the bind-mounted file itself was written"
    ok(run(node, delete(program)))
    assert outside.read_bytes() == b"127.0.0.1 localhost\n"
    lifecycle(node, program)


def test_begin_marker_without_end_is_refused_and_nothing_changes(nodes, program):
    node = nodes.start()
    node.write("/etc/hosts", f"127.0.0.1 localhost\n# BEGIN registry-node-trust {ID}\n10.0.0.1 image-registry\n".encode())
    before = node.snapshot()
    failed(run(node, create(program)), "without its", "/etc/hosts")
    assert diff(before, node.snapshot()) == []
    failed(run(node, delete(program)), "without its")
    assert diff(before, node.snapshot()) == []


def test_two_managed_blocks_become_one(nodes, program):
    node = nodes.start()
    block = f"# BEGIN registry-node-trust {ID}\n10.0.0.1 image-registry\n# END registry-node-trust {ID}\n"
    node.write("/etc/hosts", f"127.0.0.1 localhost\n{block}10.0.0.9 db\n{block}".encode())
    ok(run(node, create(program)))
    hosts = node.read("/etc/hosts").decode()
    assert hosts.count("# BEGIN registry-node-trust") == 1 and mappings(node) == [CLUSTER_IP]
    assert "10.0.0.9 db" in hosts
    ok(run(node, delete(program)))
    assert node.read("/etc/hosts") == b"127.0.0.1 localhost\n10.0.0.9 db\n"


def test_delete_on_a_clean_node_changes_nothing(nodes, program):
    node = nodes.start(WITH_CONFIG_PATH)
    before = node.snapshot()
    ok(run(node, delete(program)))
    ok(run(node, delete(program)))
    assert diff(before, node.snapshot()) == [] and node.restarts() == []


# ---- faults ------------------------------------------------------------------------------

@pytest.mark.parametrize("step", CREATE_STEPS)
def test_create_interrupted_after_each_step_is_finished_by_the_next_and_undone_by_delete(nodes, program, step):
    node = nodes.start()  # no config_path: the restart step has work to do
    before = node.snapshot()
    broken = remote_command(create_script(NodeTrustParams(NAME, 5000, STACK, "root"), CLUSTER_IP, program["ca"], fail_after=step), "root")
    failed(run(node, broken), f"injected failure after {step}")
    ok(run(node, create(program)))
    assert mappings(node) == [CLUSTER_IP]
    assert_trusted(node, program)
    assert node.restarts()[-1:] == ["restart containerd"]
    ok(run(node, delete(program)))
    assert diff(before, node.snapshot()) == []


def test_read_only_trust_folder_fails_clearly_and_changes_nothing(nodes, program):
    folder = "/usr/local/share/ca-certificates"
    node = nodes.start(f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder}\n")
    before = node.snapshot()
    failed(run(node, create(program)), f"cannot write to {folder}", "nothing was changed")
    assert diff(before, node.snapshot()) == []
    ok(run(node, delete(program)))
    assert diff(before, node.snapshot()) == []


def test_hung_step_is_bounded_by_its_timeout(nodes, program):
    node = nodes.start()
    before = node.snapshot()
    node.write("/usr/local/sbin/update-ca-certificates", b"#!/bin/sh\nexec sleep 600\n")
    node.sh("chmod 755 /usr/local/sbin/update-ca-certificates")
    hung = remote_command(create_script(NodeTrustParams(NAME, 5000, STACK, "root", step_timeout=3), CLUSTER_IP, program["ca"]), "root")
    started = time.monotonic()
    failed(run(node, hung, timeout=60), "timed out after 3s", "update-ca-certificates")
    assert time.monotonic() - started < 30
    node.sh("rm /usr/local/sbin/update-ca-certificates")
    ok(run(node, create(program)))
    assert_trusted(node, program)
    ok(run(node, delete(program)))
    assert diff(before, node.snapshot()) == []


def test_two_runs_at_once_take_turns(nodes, program):
    node = nodes.start(WITH_CONFIG_PATH)
    before = node.snapshot()
    results = [None, None]

    def create_into(i):
        results[i] = run(node, create(program))

    threads = [threading.Thread(target=create_into, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for result in results:
        ok(result)
    assert node.read("/etc/hosts").decode().count("# BEGIN registry-node-trust") == 1
    manifest = node.read(f"/var/lib/registry-node-trust/{NAME}_5000/manifest").decode().splitlines()
    assert len(manifest) == len(set(manifest))
    ok(run(node, delete(program)))
    assert diff(before, node.snapshot()) == []


# ---- users and runtimes --------------------------------------------------------------------

ADD_DEPLOY = "useradd -M -d /nonexistent -s /bin/sh deploy && usermod -p '*' deploy\n"


def test_non_root_user_with_passwordless_sudo(nodes, program):
    node = nodes.start(ADD_DEPLOY + "echo 'deploy ALL=(root) NOPASSWD: ALL' > /etc/sudoers.d/deploy && chmod 440 /etc/sudoers.d/deploy\n")
    lifecycle(node, program, who="deploy")


def test_non_root_user_without_sudo_fails_clearly(nodes, program):
    node = nodes.start(ADD_DEPLOY)
    before = node.snapshot()
    # sudo's own words, not ours: they say what is wrong.
    failed(run(node, create(program, "deploy"), user="deploy"), "sudo: a password is required")
    assert diff(before, node.snapshot()) == []


def test_forced_runtime_configures_only_that_runtime(nodes, program):
    node = nodes.start(WITH_CONFIG_PATH)
    before = node.snapshot()
    ok(run(node, create(program, "docker")))
    assert node.path(f"/etc/docker/certs.d/{ID}/ca.crt").exists()
    assert not node.path(f"/etc/containerd/certs.d/{ID}").exists()
    assert not node.path(f"/etc/containers/certs.d/{ID}").exists()
    assert_trusted(node, program)
    ok(run(node, delete(program, "docker")))
    assert diff(before, node.snapshot()) == []


def test_switching_runtime_takes_back_what_the_old_one_installed(nodes, program):
    node = nodes.start(WITH_CONFIG_PATH)
    before = node.snapshot()
    ok(run(node, create(program)))
    assert node.path(f"/etc/containerd/certs.d/{ID}/hosts.toml").exists()
    # An update re-runs the same resource's create, with the new runtime.
    as_docker = NodeTrustParams(NAME, 5000, STACK, "root", runtime="docker")
    ok(run(node, remote_command(create_script(as_docker, CLUSTER_IP, program["ca"]), "root")))
    assert not node.path(f"/etc/containerd/certs.d/{ID}").exists()
    assert node.path(f"/etc/docker/certs.d/{ID}/ca.crt").exists()
    ok(run(node, delete(program)))
    assert diff(before, node.snapshot()) == []


FAKE_K3S = "printf '#!/bin/sh\\nexit 0\\n' > /usr/local/bin/k3s && chmod 755 /usr/local/bin/k3s && mkdir -p /etc/rancher/k3s\n"


def test_k3s_gets_registries_yaml_and_one_restart_per_change(nodes, program):
    node = nodes.start(FAKE_K3S)
    before = node.snapshot()
    ok(run(node, create(program)))
    registries = node.read("/etc/rancher/k3s/registries.yaml").decode()
    assert f'"{ID}":' in registries and f"ca_file: \"/etc/rancher/k3s/registry-node-trust/{ID}/ca.crt\"" in registries
    assert node.restarts() == ["restart k3s"]
    ok(run(node, create(program)))
    assert node.restarts() == ["restart k3s"], "unchanged registries.yaml: no restart"
    assert not node.path(f"/etc/containerd/certs.d/{ID}").exists(), "k3s brings its own containerd"
    ok(run(node, delete(program)))
    assert node.restarts() == ["restart k3s", "restart k3s"]
    assert diff(before, node.snapshot()) == []


def test_k3s_registries_yaml_with_mirrors_keeps_them(nodes, program):
    mirrors = b'mirrors:\n  docker.io:\n    endpoint:\n      - "https://mirror.example.internal"\n'
    node = nodes.start(FAKE_K3S)
    node.write("/etc/rancher/k3s/registries.yaml", mirrors)
    ok(run(node, create(program)))
    registries = node.read("/etc/rancher/k3s/registries.yaml")
    assert registries.startswith(mirrors) and f'"{ID}":'.encode() in registries
    ok(run(node, delete(program)))
    assert node.read("/etc/rancher/k3s/registries.yaml") == mirrors
    lifecycle(node, program)


def test_k3s_registries_yaml_with_configs_is_refused(nodes, program):
    node = nodes.start(FAKE_K3S)
    node.write("/etc/rancher/k3s/registries.yaml", b'configs:\n  "other:5000":\n    tls:\n      insecure_skip_verify: true\n')
    before = node.snapshot()
    failed(run(node, create(program)), "already has a 'configs:' section")
    assert diff(before, node.snapshot()) == []
