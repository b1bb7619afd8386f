"""Node trust that stays right when things change around it: renamed node entries,
two stacks, runs killed mid-way, upgrades, containerd 2.x, sudo rules, other
trust-store layouts, a lost state folder. Over real OpenSSH on simulated nodes,
every change checked byte for byte, mode and owner.
"""

import itertools
import shlex

import pytest

from tests.support.nodes import DERIVED, diff, require_tools
from tests.support.stack import ROOT, ProviderState
from tests.support.trust import (
    ADD_DEPLOY,
    BUNDLE,
    CLUSTER_IP,
    FAKE_K3S,
    ID,
    NAME,
    STACK,
    WITH_CONFIG_PATH,
    assert_system_trusted,
    assert_trusted,
    ca_in_bundle,
    command,
    failed,
    lifecycle,
    mappings,
    ok,
    program_run,
    run,
    store_file_name,
)

OTHER_STACK = "organization/registry/other"
JAVA_KEYSTORE = "/etc/ssl/certs/java/cacerts"
NO_DEBIAN_STORE = "rm -rf /usr/local/share/ca-certificates\n"


@pytest.fixture(scope="module")
def other(nodes):
    """The program run again from scratch: another CA."""
    return program_run(nodes.private_key, ProviderState())


def body(pem: str) -> str:
    return "".join(line for line in pem.strip().splitlines()[1:-1])


# ---- owners ---------------------------------------------------------------------------------


def test_renaming_a_node_entry_hands_over_with_no_gap(nodes, program):
    """Pulumi creates the renamed entry's command, then deletes the old one's."""
    node = nodes.start(WITH_CONFIG_PATH)
    before = node.snapshot()
    ok(run(node, command("create", program.ca, entry="worker1")))
    ok(run(node, command("create", program.ca, entry="worker-1")))
    deleted = ok(run(node, command("delete", entry="worker1")))
    assert f"kept: still used by {STACK} (worker-1)" in deleted.stderr
    assert mappings(node) == [CLUSTER_IP]
    assert_trusted(node, program)
    assert node.path(f"/etc/containerd/certs.d/{ID}/hosts.toml").exists()
    ok(run(node, command("delete", entry="worker-1")))
    assert diff(before, node.snapshot()) == []


def test_two_stacks_of_one_registry_share_the_node_until_the_last_one_goes(nodes, program):
    node = nodes.start(WITH_CONFIG_PATH)
    before = node.snapshot()
    ok(run(node, command("create", program.ca)))
    ok(run(node, command("create", program.ca, stack=OTHER_STACK)))
    ok(run(node, command("delete")))
    assert mappings(node) == [CLUSTER_IP]
    assert_trusted(node, program)
    ok(run(node, command("delete", stack=OTHER_STACK)))
    assert diff(before, node.snapshot()) == [], "no empty certs.d folder is left either"


@pytest.mark.parametrize("difference", ["address", "CA"])
def test_another_stack_with_another_registry_under_the_name_is_refused_and_changes_nothing(nodes, program, other, difference):
    node = nodes.start(WITH_CONFIG_PATH)
    original = node.snapshot()
    ok(run(node, command("create", program.ca)))
    before = node.snapshot()
    claim = (command("create", program.ca, stack=OTHER_STACK, ip="127.0.10.2") if difference == "address"
             else command("create", other.ca, stack=OTHER_STACK))
    refused = failed(run(node, claim), f"{ID} is already set up for stack {STACK} (node entry root)", "Nothing was changed")
    assert ("address 127.0.10.1" if difference == "address" else "another CA") in refused.stderr
    assert diff(before, node.snapshot()) == []
    ok(run(node, command("delete")))
    assert diff(original, node.snapshot()) == []


def test_the_same_name_on_another_port_is_refused_and_changes_nothing(nodes, program):
    node = nodes.start(WITH_CONFIG_PATH)
    ok(run(node, command("create", program.ca)))
    before = node.snapshot()
    failed(run(node, command("create", program.ca, stack=OTHER_STACK, port=5001)),
           f"{NAME} already names the registry on port 5000 of stack {STACK}")
    assert diff(before, node.snapshot()) == []
    assert mappings(node) == [CLUSTER_IP]


def test_one_stack_moving_its_registry_to_another_address_follows_it(nodes, program):
    """A new clusterIp re-runs the same command's create with the new address."""
    node = nodes.start(WITH_CONFIG_PATH)
    before = node.snapshot()
    ok(run(node, command("create", program.ca)))
    ok(run(node, command("create", program.ca, ip="127.0.10.9")))
    assert mappings(node) == ["127.0.10.9"]
    ok(run(node, command("delete")))
    assert diff(before, node.snapshot()) == []


def test_a_node_set_up_by_the_previous_format_is_taken_over_then_restored(nodes, program, tmp_path):
    """State written before owners were recorded (tests/fixtures/legacy) is read, taken over, and undone."""
    library = (ROOT / "tests/fixtures/legacy/node_trust_format1.sh").read_text()
    header = "".join(f"{k}={shlex.quote(v)}\n" for k, v in {
        "REG_NAME": NAME, "REG_PORT": "5000", "REG_IP": CLUSTER_IP, "REG_RUNTIME": "auto",
        "REG_CA": program.ca.strip(), "STEP_TIMEOUT": "120"}.items())
    steps = ("step_prepare", "step_hosts", "step_trust_store", "step_docker", "step_containerd",
             "step_containers", "step_k3s", "step_converge", "step_restart")
    script = tmp_path / "format1.sh"
    script.write_text(header + library + "begin\n" + "\n".join(steps) + "\n")
    node = nodes.start(WITH_CONFIG_PATH)
    before = node.snapshot()
    old = node.inside("sh", str(script), check=False)
    assert old.returncode == 0, old.stderr
    assert mappings(node) == [CLUSTER_IP]
    taken = ok(run(node, program.create()))
    assert "taking over the state of an earlier version" in taken.stderr
    assert node.read(f"/var/lib/registry-node-trust/{NAME}_5000/owners").decode().startswith(f"{STACK} root {CLUSTER_IP} ")
    assert_trusted(node, program)
    ok(run(node, program.delete()))
    assert diff(before, node.snapshot()) == []


# ---- runs killed mid-way ------------------------------------------------------------------------

KILL_LAYOUTS = {
    # Debian's containerd config: no config_path, so the CA goes to the system store and containerd restarts.
    "system store": ("", "restart containerd"),
    "k3s": (FAKE_K3S, "restart k3s"),
}


@pytest.mark.parametrize("layout", list(KILL_LAYOUTS))
def test_a_create_killed_after_any_rename_is_finished_by_the_next_run(nodes, program, layout):
    """After a kill at every point where a file was just put in place, the next create exits 0
    only with the node resolving and trusting, and owing nothing; delete restores the node."""
    prepare, restart = KILL_LAYOUTS[layout]
    for count in itertools.count(1):
        node = nodes.start(prepare)
        try:
            before = node.snapshot()
            killed = run(node, command("create", program.ca, kill_after_rename=count))
            if killed.returncode == 0:
                assert count > 5, f"only {count - 1} renames: the kill points were not reached"
                break
            # SIGKILL: the login shell says 137, or ssh 255 when the shell had exec'd the script.
            assert killed.returncode in (137, 255) and "error" not in killed.stderr, (count, killed.stderr)
            ok(run(node, program.create()))
            assert mappings(node) == [CLUSTER_IP], count
            assert_trusted(node, program)
            assert restart in node.restarts(), (count, node.restarts())
            assert not list(node.path(f"/var/lib/registry-node-trust/{NAME}_5000").glob("pending-*")), count
            ok(run(node, program.delete()))
            assert diff(before, node.snapshot()) == [], count
        finally:
            node.stop()


# ---- files we share -------------------------------------------------------------------------------

OPERATOR_MIRRORS = b'mirrors:\n  docker.io:\n    endpoint:\n      - "https://mirror.example.internal"\n'


def test_k3s_registries_yaml_we_created_keeps_what_the_operator_adds_later(nodes, program):
    node = nodes.start(FAKE_K3S)
    before = node.snapshot()
    ok(run(node, program.create()))
    ours = node.read("/etc/rancher/k3s/registries.yaml")
    node.write("/etc/rancher/k3s/registries.yaml", ours + OPERATOR_MIRRORS)
    ok(run(node, program.create()))
    assert node.read("/etc/rancher/k3s/registries.yaml") == ours + OPERATOR_MIRRORS, "an update keeps their mirrors"
    ok(run(node, program.delete()))
    assert node.read("/etc/rancher/k3s/registries.yaml") == OPERATOR_MIRRORS, "destroy keeps their mirrors"
    changes = diff(before, node.snapshot())
    assert changes == ["added /etc/rancher/k3s/registries.yaml"], changes


def test_k3s_registries_yaml_without_final_newline_comes_back_without_one(nodes, program):
    original = OPERATOR_MIRRORS.rstrip(b"\n")
    node = nodes.start(FAKE_K3S)
    node.write("/etc/rancher/k3s/registries.yaml", original)
    ok(run(node, program.create()))
    assert node.read("/etc/rancher/k3s/registries.yaml").startswith(original + b"\n# BEGIN registry-node-trust")
    ok(run(node, program.delete()))
    assert node.read("/etc/rancher/k3s/registries.yaml") == original
    lifecycle(node, program)


# ---- containerd 1.x and 2.x ----------------------------------------------------------------------------

def containerd_files(files: dict[str, str]) -> str:
    return "".join(f"mkdir -p $(dirname {path}) && cat > {path} <<'EOF'\n{text}EOF\n" for path, text in files.items())


CONTAINERD_LAYOUTS = {
    "2.x, version 3, single quotes": {"/etc/containerd/config.toml": (
        "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = '/etc/containerd/certs.d'\n")},
    "2.x, version 3, in an import": {
        "/etc/containerd/config.toml": "version = 3\nimports = ['conf.d/*.toml']\n",
        "/etc/containerd/conf.d/registry.toml": (
            "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n")},
    "1.x, version 2, single quotes": {"/etc/containerd/config.toml": (
        "version = 2\n[plugins.'io.containerd.grpc.v1.cri'.registry]\n  config_path = '/etc/containerd/certs.d'\n")},
    "1.x, version 2, in an import": {
        "/etc/containerd/config.toml": "version = 2\nimports = [\n  \"/etc/containerd/conf.d/registry.toml\",\n]\n",
        "/etc/containerd/conf.d/registry.toml": (
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n")},
}


@pytest.mark.parametrize("layout", list(CONTAINERD_LAYOUTS))
def test_containerd_config_path_is_found_in_every_layout_and_quoting(nodes, program, layout):
    node = nodes.start(containerd_files(CONTAINERD_LAYOUTS[layout]))
    before = node.snapshot()
    ok(run(node, program.create()))
    assert f'ca = "/etc/containerd/certs.d/{ID}/ca.crt"' in node.read(f"/etc/containerd/certs.d/{ID}/hosts.toml").decode()
    assert node.restarts() == [], "hosts.toml is read on each pull: no restart"
    ok(run(node, program.delete()))
    assert diff(before, node.snapshot()) == []


def test_containerd_2_without_config_path_trusts_the_system_store(nodes, program):
    node = nodes.start(containerd_files({"/etc/containerd/config.toml": "version = 3\n[plugins.'io.containerd.cri.v1.images']\n"}))
    ok(run(node, program.create()))
    assert not node.path(f"/etc/containerd/certs.d/{ID}").exists()
    assert_system_trusted(node, program)
    assert node.restarts() == ["restart containerd"]
    ok(run(node, program.delete()))


# ---- sudo ---------------------------------------------------------------------------------------------------

def sudoers(*rules: str) -> str:
    """A `deploy` user with these sudoers lines."""
    lines = " ".join(shlex.quote(rule) for rule in rules)
    return ADD_DEPLOY + f"printf '%s\\n' {lines} > /etc/sudoers.d/deploy && chmod 440 /etc/sudoers.d/deploy\n"


def test_a_user_allowed_only_bin_sh_runs_the_commands(nodes, program):
    """As the README and the error message say: NOPASSWD for /bin/sh is enough."""
    node = nodes.start(sudoers("deploy ALL=(root) NOPASSWD: /bin/sh"))
    lifecycle(node, program, who="deploy", user="deploy")


def test_sudo_under_requiretty_fails_with_sudos_own_message(nodes, program):
    node = nodes.start(sudoers("Defaults:deploy requiretty", "deploy ALL=(root) NOPASSWD: ALL"))
    before = node.snapshot()
    failed(run(node, program.create("deploy"), user="deploy"), "sudo: sorry, you must have a tty to run sudo")
    assert diff(before, node.snapshot()) == []


# ---- the lock -----------------------------------------------------------------------------------------------

def test_no_other_user_can_hold_the_lock_and_a_planted_one_fails_fast(nodes, program):
    node = nodes.start(ADD_DEPLOY + "mkfifo /run/lock/registry-node-trust.lock\n")  # where the lock used to be
    ok(run(node, program.create()))
    assert node.sh("stat -c %u:%a /run/registry-node-trust").stdout.strip() == "0:700"
    held = node.inside("su", "-s", "/bin/sh", "deploy", "-c", "flock -n /run/registry-node-trust/lock true", check=False)
    assert held.returncode != 0 and "Permission denied" in held.stderr
    node.sh("rm /run/registry-node-trust/lock && mkfifo /run/registry-node-trust/lock")
    failed(run(node, program.delete(), timeout=30), "/run/registry-node-trust/lock is not a regular file")
    node.sh("rm /run/registry-node-trust/lock && chmod 777 /run/registry-node-trust")
    failed(run(node, program.delete(), timeout=30), "must be root's alone")
    node.sh("chmod 700 /run/registry-node-trust")
    ok(run(node, program.delete()))


# ---- trust stores ---------------------------------------------------------------------------------------------

# Stand-ins for other distributions' store tools, as far as the node script uses them:
# compile the anchors, on top of the bundle the node started with, into the distribution's bundle.
def store_tool(tool: str, anchors: str, bundle: str) -> str:
    return (
        f"mkdir -p {anchors} $(dirname {bundle}) && cp {BUNDLE} /etc/base-bundle.pem\n"
        f"cat > /usr/local/sbin/{tool} <<'EOF'\n#!/bin/sh\ncat /etc/base-bundle.pem {anchors}/*.crt > {bundle} 2>/dev/null"
        f" || cp /etc/base-bundle.pem {bundle}\nEOF\nchmod 755 /usr/local/sbin/{tool}\n"
    )


STORE_LAYOUTS = {
    "openSUSE": ("update-ca-certificates", "/etc/pki/trust/anchors", "/var/lib/ca-certificates/ca-bundle.pem"),
    "Arch": ("update-ca-trust", "/etc/ca-certificates/trust-source/anchors", "/etc/ssl/certs/ca-certificates.crt"),
}


@pytest.mark.parametrize("layout", list(STORE_LAYOUTS))
def test_other_distributions_trust_stores_get_the_ca(nodes, program, layout):
    tool, anchors, bundle = STORE_LAYOUTS[layout]
    node = nodes.start(NO_DEBIAN_STORE + store_tool(tool, anchors, bundle))
    before = node.snapshot()
    ok(run(node, program.create()))
    assert node.path(f"{anchors}/{store_file_name(program.ca)}").exists()
    assert_system_trusted(node, program, bundle)
    assert node.restarts() == ["restart containerd"], "containerd without config_path reads the store"
    ok(run(node, program.delete()))
    assert not ca_in_bundle(node, program.ca, bundle)
    assert diff(before, node.snapshot()) == []


def test_no_trust_store_where_containerd_needs_one_is_a_failure_that_changes_nothing(nodes, program):
    node = nodes.start(NO_DEBIAN_STORE)
    before = node.snapshot()
    failed(run(node, program.create()), "no system store was found", "Nothing was changed")
    assert diff(before, node.snapshot()) == []


def test_no_trust_store_is_fine_where_every_runtime_reads_certs_d(nodes, program):
    node = nodes.start(WITH_CONFIG_PATH + NO_DEBIAN_STORE)
    before = node.snapshot()
    ok(run(node, program.create()))
    assert node.path(f"/etc/containerd/certs.d/{ID}/hosts.toml").exists()
    ok(run(node, program.delete()))
    assert diff(before, node.snapshot()) == []


def keystore_certificates(node) -> str:
    return "\n".join(DERIVED[JAVA_KEYSTORE](node.read(JAVA_KEYSTORE)))


def test_a_new_ca_replaces_the_old_one_in_stores_derived_from_the_bundle(nodes, program, other):
    """Debian's Java keystore is told the old CA went away, and gets the new one."""
    require_tools({"keytool": "default-jre-headless"})
    node = nodes.start()  # containerd without config_path: the system store is needed
    before = node.snapshot()
    ok(run(node, command("create", program.ca)))
    assert body(program.ca) in keystore_certificates(node).replace("\n", "")
    ok(run(node, command("create", other.ca)))  # the same command, after a CA rotation
    keystore = keystore_certificates(node).replace("\n", "")
    assert body(other.ca) in keystore and body(program.ca) not in keystore
    assert ca_in_bundle(node, other.ca) and not ca_in_bundle(node, program.ca)
    ok(run(node, command("delete")))
    assert diff(before, node.snapshot()) == []


# ---- a lost state folder ----------------------------------------------------------------------------------------

def test_delete_after_the_state_folder_was_lost_still_takes_our_ca_away(nodes, program):
    node = nodes.start(WITH_CONFIG_PATH)
    before = node.snapshot()
    ok(run(node, program.create()))
    node.sh("rm -rf /var/lib/registry-node-trust")
    ok(run(node, program.delete()))
    assert mappings(node) == [] and not ca_in_bundle(node, program.ca)
    after = node.snapshot()
    for path, entry in after.items():
        assert entry.kind == "dir" or body(program.ca).encode() not in entry.content.replace(b"\n", b""), path
    # Only the empty folders whose making the lost manifest recorded are left.
    assert all(change.startswith("added ") and after[change[6:]].kind == "dir" for change in diff(before, after))


def test_a_node_set_up_before_ca_rotation_moves_to_one_file_per_ca_then_is_restored(nodes, program):
    """The previous release kept one trust-store file per endpoint; the next create swaps it for
    the fingerprint-named one (new before old), tells the Java keystore, and delete restores all."""
    require_tools({"keytool": "default-jre-headless"})
    previous = (ROOT / "tests/fixtures/legacy/program_single_ca.sh").read_text()
    node = nodes.start()
    before = node.snapshot()
    ok(node.ssh(program.create(), stdin=previous))
    old_file = f"/usr/local/share/ca-certificates/registry-node-trust-{NAME}-5000.crt"
    assert node.path(old_file).exists()
    ok(run(node, program.create()))
    assert not node.path(old_file).exists()
    assert node.path(f"/usr/local/share/ca-certificates/{store_file_name(program.ca)}").exists()
    assert_trusted(node, program)
    aliases = keystore_certificates(node)
    assert f"registry-node-trust-{NAME}-5000.pem" not in aliases and body(program.ca) in aliases.replace("\n", "")
    ok(run(node, program.delete()))
    assert diff(before, node.snapshot()) == []
