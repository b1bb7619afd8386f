"""The node commands, as the program builds them, run over real OpenSSH on simulated nodes.

Each case checks the exit status and every byte, mode and owner under /etc and
/usr/local (and our state folder) before, after create, after a second create
and after delete, plus whether the CA is trusted and which restarts were asked for.
"""

import threading
import time

import pytest

from registry.node_script import CREATE_STEPS
from tests.support.nodes import diff
from tests.support.trust import (
    ADD_DEPLOY,
    BUNDLE,
    CLUSTER_IP,
    FAKE_K3S,
    ID,
    NAME,
    STORE_DIR,
    WITH_CONFIG_PATH,
    assert_system_trusted,
    assert_trusted,
    ca_in_bundle,
    command,
    failed,
    lifecycle,
    mappings,
    ok,
    run,
)

# ---- the standard node ----------------------------------------------------------------

def test_standard_containerd_node_is_restored_byte_for_byte_without_any_restart(nodes, program):
    node = nodes.start(WITH_CONFIG_PATH)
    before = node.snapshot()
    ok(run(node, program.create()))
    hosts_toml = node.read(f"/etc/containerd/certs.d/{ID}/hosts.toml").decode()
    assert f'server = "https://{ID}"' in hosts_toml
    assert f'[host."https://{ID}"]' in hosts_toml and f'ca = "/etc/containerd/certs.d/{ID}/ca.crt"' in hosts_toml
    assert node.read(f"/etc/containerd/certs.d/{ID}/ca.crt").decode().strip() == program.ca.strip()
    assert node.read(f"/etc/docker/certs.d/{ID}/ca.crt").decode().strip() == program.ca.strip()
    assert node.read(f"/etc/containers/certs.d/{ID}/ca.crt").decode().strip() == program.ca.strip()
    ok(run(node, program.delete()))
    assert diff(before, node.snapshot()) == []
    lifecycle(node, program)
    assert node.restarts() == [], "certs.d and hosts.toml are read on each pull: no restart"


def test_where_every_runtime_reads_a_ca_file_of_its_own_the_system_store_is_left_alone(nodes, program):
    # In the system store our CA would vouch, for every TLS client of the node, for any
    # name it signs (registry-1.docker.io included): only a runtime that needs it gets it.
    node = nodes.start(WITH_CONFIG_PATH)
    bundle = node.read(BUNDLE)
    ok(run(node, program.create()))
    assert_trusted(node, program)
    assert not list(node.path(STORE_DIR).glob("registry-node-trust-*")) and node.read(BUNDLE) == bundle
    assert not ca_in_bundle(node, program.ca)


def test_a_store_file_an_earlier_run_made_is_taken_away_once_no_runtime_needs_it(nodes, program):
    node = nodes.start()  # containerd without config_path: the system store
    before = node.snapshot()
    ok(run(node, program.create()))
    assert_system_trusted(node, program)
    node.sh(WITH_CONFIG_PATH)  # the operator sets config_path (or an earlier release trusted the store anyway)
    ok(run(node, program.create()))
    assert_trusted(node, program)
    assert not list(node.path(STORE_DIR).glob("registry-node-trust-*")) and not ca_in_bundle(node, program.ca)
    ok(run(node, program.delete()))
    assert diff(before, node.snapshot()) == ["changed /etc/containerd/config.toml: content"], "only the operator's edit"


def test_containerd_without_config_path_trusts_the_system_store_and_restarts_once(nodes, program):
    node = nodes.start()  # Debian's containerd config: no registry config_path
    config = node.read("/etc/containerd/config.toml")
    before = node.snapshot()
    ok(run(node, program.create()))
    assert not node.path(f"/etc/containerd/certs.d/{ID}").exists(), "hosts.toml is not read without config_path"
    assert_system_trusted(node, program)
    assert node.restarts() == ["restart containerd"]
    ok(run(node, program.create()))
    assert node.restarts() == ["restart containerd"], "nothing changed, so no second restart"
    ok(run(node, program.delete()))
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
    ok(run(node, program.create()))
    assert node.read("/etc/docker/daemon.json") == daemon
    ok(run(node, program.delete()))
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
    ok(run(node, program.create()))
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
    ok(run(node, program.delete()))
    assert node.read("/etc/hosts") == original


def test_symlinked_hosts_is_edited_at_its_target(nodes, program):
    node = nodes.start("mv /etc/hosts /etc/hosts.real && ln -s hosts.real /etc/hosts\n")
    original = node.read("/etc/hosts.real")
    ok(run(node, program.create()))
    assert node.path("/etc/hosts").is_symlink()
    assert CLUSTER_IP.encode() in node.read("/etc/hosts.real")
    ok(run(node, program.delete()))
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
    ok(run(node, program.create()))
    assert CLUSTER_IP.encode() in outside.read_bytes(), "the bind-mounted file itself was written"
    ok(run(node, program.delete()))
    assert outside.read_bytes() == b"127.0.0.1 localhost\n"
    lifecycle(node, program)


def test_begin_marker_without_end_is_refused_and_nothing_changes(nodes, program):
    node = nodes.start()
    node.write("/etc/hosts", f"127.0.0.1 localhost\n# BEGIN registry-node-trust {ID}\n10.0.0.1 image-registry\n".encode())
    before = node.snapshot()
    failed(run(node, program.create()), "without its", "/etc/hosts")
    assert diff(before, node.snapshot()) == []
    failed(run(node, program.delete()), "without its")
    assert diff(before, node.snapshot()) == []


def test_two_managed_blocks_become_one(nodes, program):
    node = nodes.start()
    block = f"# BEGIN registry-node-trust {ID}\n10.0.0.1 image-registry\n# END registry-node-trust {ID}\n"
    node.write("/etc/hosts", f"127.0.0.1 localhost\n{block}10.0.0.9 db\n{block}".encode())
    ok(run(node, program.create()))
    hosts = node.read("/etc/hosts").decode()
    assert hosts.count("# BEGIN registry-node-trust") == 1 and mappings(node) == [CLUSTER_IP]
    assert "10.0.0.9 db" in hosts
    ok(run(node, program.delete()))
    assert node.read("/etc/hosts") == b"127.0.0.1 localhost\n10.0.0.9 db\n"


def test_delete_on_a_clean_node_changes_nothing(nodes, program):
    node = nodes.start(WITH_CONFIG_PATH)
    before = node.snapshot()
    ok(run(node, program.delete()))
    ok(run(node, program.delete()))
    assert diff(before, node.snapshot()) == [] and node.restarts() == []


# ---- faults ------------------------------------------------------------------------------

@pytest.mark.parametrize("step", CREATE_STEPS)
def test_create_interrupted_after_each_step_is_finished_by_the_next_and_undone_by_delete(nodes, program, step):
    node = nodes.start()  # no config_path: the restart step has work to do
    before = node.snapshot()
    broken = command("create", program.ca, fail_after=step)
    failed(run(node, broken), f"injected failure after {step}")
    ok(run(node, program.create()))
    assert mappings(node) == [CLUSTER_IP]
    assert_trusted(node, program)
    assert node.restarts()[-1:] == ["restart containerd"]
    ok(run(node, program.delete()))
    assert diff(before, node.snapshot()) == []


def test_read_only_trust_folder_fails_clearly_and_changes_nothing(nodes, program):
    folder = "/usr/local/share/ca-certificates"
    node = nodes.start(f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder}\n")
    before = node.snapshot()
    failed(run(node, program.create()), f"cannot write to {folder}", "nothing was changed")
    assert diff(before, node.snapshot()) == []
    ok(run(node, program.delete()))
    assert diff(before, node.snapshot()) == []


def test_hung_step_is_bounded_by_its_timeout(nodes, program):
    node = nodes.start()
    before = node.snapshot()
    node.write("/usr/local/sbin/update-ca-certificates", b"#!/bin/sh\nexec sleep 600\n")
    node.sh("chmod 755 /usr/local/sbin/update-ca-certificates")
    hung = command("create", program.ca, step_timeout=3)
    started = time.monotonic()
    failed(run(node, hung, timeout=60), "timed out after 3s", "update-ca-certificates")
    assert time.monotonic() - started < 30
    node.sh("rm /usr/local/sbin/update-ca-certificates")
    ok(run(node, program.create()))
    assert_trusted(node, program)
    ok(run(node, program.delete()))
    assert diff(before, node.snapshot()) == []


def test_two_runs_at_once_take_turns(nodes, program):
    node = nodes.start(WITH_CONFIG_PATH)
    before = node.snapshot()
    results = [None, None]

    def create_into(i):
        results[i] = run(node, program.create())

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
    ok(run(node, program.delete()))
    assert diff(before, node.snapshot()) == []


# ---- users and runtimes --------------------------------------------------------------------

def test_non_root_user_with_passwordless_sudo(nodes, program):
    node = nodes.start(ADD_DEPLOY + "echo 'deploy ALL=(root) NOPASSWD: ALL' > /etc/sudoers.d/deploy && chmod 440 /etc/sudoers.d/deploy\n")
    lifecycle(node, program, who="deploy", user="deploy")


def test_non_root_user_without_sudo_fails_clearly(nodes, program):
    node = nodes.start(ADD_DEPLOY)
    before = node.snapshot()
    # sudo's own words, not ours: they say what is wrong.
    failed(run(node, program.create("deploy"), user="deploy"), "sudo: a password is required")
    assert diff(before, node.snapshot()) == []


def test_forced_runtime_configures_only_that_runtime(nodes, program):
    node = nodes.start(WITH_CONFIG_PATH)
    before = node.snapshot()
    ok(run(node, program.create("docker")))
    assert node.path(f"/etc/docker/certs.d/{ID}/ca.crt").exists()
    assert not node.path(f"/etc/containerd/certs.d/{ID}").exists()
    assert not node.path(f"/etc/containers/certs.d/{ID}").exists()
    assert_trusted(node, program)
    ok(run(node, program.delete("docker")))
    assert diff(before, node.snapshot()) == []


def test_switching_runtime_takes_back_what_the_old_one_installed(nodes, program):
    node = nodes.start(WITH_CONFIG_PATH)
    before = node.snapshot()
    ok(run(node, program.create()))
    assert node.path(f"/etc/containerd/certs.d/{ID}/hosts.toml").exists()
    # An update re-runs the same resource's create, with the new runtime.
    ok(run(node, command("create", program.ca, runtime="docker")))
    assert not node.path(f"/etc/containerd/certs.d/{ID}").exists()
    assert node.path(f"/etc/docker/certs.d/{ID}/ca.crt").exists()
    ok(run(node, program.delete()))
    assert diff(before, node.snapshot()) == []


def test_k3s_gets_registries_yaml_and_one_restart_per_change(nodes, program):
    node = nodes.start(FAKE_K3S)
    before = node.snapshot()
    ok(run(node, program.create()))
    registries = node.read("/etc/rancher/k3s/registries.yaml").decode()
    assert f'"{ID}":' in registries and f"ca_file: \"/etc/rancher/k3s/registry-node-trust/{ID}/ca.crt\"" in registries
    assert node.restarts() == ["restart k3s"]
    ok(run(node, program.create()))
    assert node.restarts() == ["restart k3s"], "unchanged registries.yaml: no restart"
    assert not node.path(f"/etc/containerd/certs.d/{ID}").exists(), "k3s brings its own containerd"
    ok(run(node, program.delete()))
    assert node.restarts() == ["restart k3s", "restart k3s"]
    assert diff(before, node.snapshot()) == []


# k3d: k3s as the node's pid 1, with neither systemctl nor rc-service, and k3s's own
# containerd reading hosts.toml under its agent folder.
K3D = (FAKE_K3S + "rm -f /usr/local/sbin/systemctl /usr/bin/systemctl /bin/systemctl\n"
       "mkdir -p /var/lib/rancher/k3s/agent/etc/containerd/certs.d\n")


def test_a_k3d_node_trusts_at_once_through_k3s_certs_d_with_no_restart_and_is_given_back(nodes, program):
    node = nodes.start(K3D)
    before = node.snapshot(extra=("/var/lib/registry-node-trust", "/var/lib/rancher"))
    result = ok(run(node, program.create()))
    assert "by hand" not in result.stderr, result.stderr
    live = f"/var/lib/rancher/k3s/agent/etc/containerd/certs.d/{ID}"
    assert f'ca = "{live}/ca.crt"' in node.read(f"{live}/hosts.toml").decode()
    assert node.read(f"{live}/ca.crt").decode().strip() == program.ca.strip()
    assert f'"{ID}":' in node.read("/etc/rancher/k3s/registries.yaml").decode(), "for k3s's next start"
    assert node.restarts() == []
    ok(run(node, program.create()))
    result = ok(run(node, program.delete()))
    assert "by hand" not in result.stderr, result.stderr
    assert diff(before, node.snapshot(extra=("/var/lib/registry-node-trust", "/var/lib/rancher"))) == []


def test_k3s_registries_yaml_with_mirrors_keeps_them(nodes, program):
    mirrors = b'mirrors:\n  docker.io:\n    endpoint:\n      - "https://mirror.example.internal"\n'
    node = nodes.start(FAKE_K3S)
    node.write("/etc/rancher/k3s/registries.yaml", mirrors)
    ok(run(node, program.create()))
    registries = node.read("/etc/rancher/k3s/registries.yaml")
    assert registries.startswith(mirrors) and f'"{ID}":'.encode() in registries
    ok(run(node, program.delete()))
    assert node.read("/etc/rancher/k3s/registries.yaml") == mirrors
    lifecycle(node, program)


def test_k3s_registries_yaml_with_configs_is_refused(nodes, program):
    node = nodes.start(FAKE_K3S)
    node.write("/etc/rancher/k3s/registries.yaml", b'configs:\n  "other:5000":\n    tls:\n      insecure_skip_verify: true\n')
    before = node.snapshot()
    failed(run(node, program.create()), "already has a 'configs:' section")
    assert diff(before, node.snapshot()) == []
