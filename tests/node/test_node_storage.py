"""storage: node, for clusters without a storage provisioner: the data folder on one node,
prepared over real OpenSSH by the program's own command, kept or removed on destroy as
`keepData` says, and a real registry that finds its images again after destroy and up.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess

import pytest

from registry.node_script import as_root
from tests.support.constants import CLUSTER_IP, COMMAND, STORAGE
from tests.support.nodes import NEEDED, diff, simulated_nodes
from tests.support.oci import read_image, write_image
from tests.support.registry_server import REGISTRY_TOOL, PodSource, Registry
from tests.support.stack import ROOT, StackRun, run_stack
from tests.support.trust import ADD_DEPLOY

MARKER = f"{STORAGE}/.registry-storage-folder"
EXTRA = ("/var/lib/registry-node-trust", STORAGE, "/srv")


def config(node, **more) -> dict:
    return {
        "serviceCidr": "127.0.0.0/8", "clusterIp": CLUSTER_IP, "sshPrivateKey": "key", "storage": "node",
        "storageNode": "cp", "nodes": [{"name": "cp", "host": node.address, "port": node.port, **more.pop("entry", {})}],
        **more,
    }


def folder_command(run: StackRun) -> dict:
    return run.one(COMMAND, "registry-storage-folder").inputs


# ---- on a simulated node, over real SSH -----------------------------------------------------------


@pytest.fixture(scope="module")
def nodes():
    with simulated_nodes({**NEEDED, **REGISTRY_TOOL, "skopeo": "skopeo"}) as factory:
        yield factory


def ok(result):
    assert result.returncode == 0, f"stdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def test_create_prepares_the_folder_for_the_registry_user_and_a_second_run_changes_nothing(nodes):
    node = nodes.start()
    before = node.snapshot(extra=EXTRA)
    command = folder_command(run_stack(config(node, keepData=False)))
    ok(node.run_command(command, "create"))
    st = os.stat(node.path(STORAGE))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 1000, 0o700)
    marker = os.stat(node.path(MARKER))
    assert (marker.st_uid, marker.st_nlink) == (0, 1), "the marker is root's own: uid 1000 cannot change it"
    created = node.snapshot(extra=EXTRA)
    ok(node.run_command(command, "create"))
    assert diff(created, node.snapshot(extra=EXTRA)) == []
    ok(node.run_command(command, "delete"))
    assert diff(before, node.snapshot(extra=EXTRA)) == [], "keepData false: the node is as it was"
    ok(node.run_command(command, "delete"))
    assert diff(before, node.snapshot(extra=EXTRA)) == [], "a second delete changes nothing"


def test_a_folder_holding_someone_elses_files_is_refused_and_never_removed(nodes):
    node = nodes.start("mkdir -p /srv/data && echo mine > /srv/data/notes.txt\n")
    before = node.snapshot(extra=EXTRA)
    command = folder_command(run_stack(config(node, storagePath="/srv/data", keepData=False)))
    result = node.run_command(command, "create")
    assert result.returncode != 0 and "holds files that are not the registry's" in result.stderr, result.stderr
    ok(node.run_command(command, "delete"))
    assert diff(before, node.snapshot(extra=EXTRA)) == []


@pytest.mark.parametrize("planted", ["marker", "folder", "hard link"])
def test_a_link_planted_by_the_registry_user_is_never_followed_and_shadow_stays_roots(nodes, planted):
    # uid 1000 owns the folder (the registry's container, or the node's user
    # 1000) and can replace the marker with a link; the next up runs as root.
    # A hard link needs the same file system (a root-only file of /var stands for
    # /etc/shadow, on another one here) and fs.protected_hardlinks off (the test
    # makes it as root).
    node = nodes.start("install -m 600 /dev/null /var/lib/root-only\n")
    command = folder_command(run_stack(config(node)))
    ok(node.run_command(command, "create"))
    target = {"marker": "/etc/shadow", "hard link": "/var/lib/root-only", "folder": "/etc"}[planted]
    before = os.stat(node.path(target))
    if planted == "marker":
        node.sh(f"rm {MARKER} && ln -s {target} {MARKER}")
    elif planted == "hard link":
        node.sh(f"rm {MARKER} && ln {target} {MARKER}")
    else:
        node.sh(f"rm -rf {STORAGE} && ln -s {target} {STORAGE}")
    result = node.run_command(command, "create")
    assert result.returncode != 0 and ("not" in result.stderr or "links" in result.stderr), result.stderr
    after = os.stat(node.path(target))
    assert (after.st_uid, after.st_gid, after.st_mode) == (before.st_uid, before.st_gid, before.st_mode), target
    assert after.st_uid == 0, target


def test_a_state_root_that_is_not_roots_alone_is_refused_by_both_programs_and_nothing_planted_runs(nodes):
    # Before this release the folder could be the node program's own state root: the
    # folder command gave it to uid 1000, who could plant a manifest line for root's next run.
    node = nodes.start("mkdir -p /var/lib/registry-node-trust/image-registry_5000 && "
                       "echo 'file /etc/passwd' > /var/lib/registry-node-trust/image-registry_5000/manifest && "
                       "chown -R 1000:1000 /var/lib/registry-node-trust\n")
    passwd = node.read("/etc/passwd")
    run = run_stack(config(node, keepData=False))
    trust = run.one(COMMAND, "registry-node-cp").inputs
    for command, which in ((trust, "create"), (trust, "delete"), (folder_command(run), "create")):
        result = node.run_command(command, which)
        assert result.returncode != 0, (which, result.stderr)
        assert "/var/lib/registry-node-trust must be root's alone (owner 0, not writable by others), it is: owner 1000" \
            in result.stderr, result.stderr
    assert node.read("/etc/passwd") == passwd and os.stat(node.path("/etc/passwd")).st_uid == 0


def test_a_switch_between_ssh_and_the_daemon_set_never_removes_the_folder(nodes):
    # Each way claims the folder; the new one's create runs before the old one's delete.
    node = nodes.start()
    ssh = folder_command(run_stack(config(node, keepData=False)))
    cluster = {**ssh, "create": ssh["create"].replace(" ssh'", " cluster registry-node-trust'"),
               "delete": ssh["delete"].replace(" ssh'", " cluster registry-node-trust'")}
    assert cluster["create"] != ssh["create"]
    ok(node.run_command(ssh, "create"))
    node.sh(f"echo blob > {STORAGE}/blob && chown 1000:1000 {STORAGE}/blob")
    ok(node.run_command(cluster, "create"))
    result = ok(node.run_command(ssh, "delete"))
    assert "kept: still used by organization/registry/test cluster registry-node-trust" in result.stderr
    assert node.read(f"{STORAGE}/blob") == b"blob\n"
    ok(node.run_command(cluster, "delete"))
    assert not node.path(STORAGE).exists(), "the last claim's delete, with keepData false, removes it"


def test_a_folder_made_by_the_release_before_is_taken_over_and_that_releases_delete_no_longer_removes_it(nodes):
    # An up of this release runs the new create first; a stack's state may still hold the old
    # delete (pulumi-command runs it when the resource goes, as when switching nodeTrust).
    old_create, old_delete = (ROOT / "tests/fixtures/legacy/storage_keep_false.sh").read_text().split("# ---- delete\n")
    node = nodes.start()
    ok(node.ssh(as_root(old_create, "root")))
    node.sh(f"echo blob > {STORAGE}/blob && chown 1000:1000 {STORAGE}/blob")
    ok(node.run_command(folder_command(run_stack(config(node, keepData=False))), "create"))
    assert not node.path(f"{STORAGE}/.registry-storage").exists() and node.path(MARKER).exists()
    result = ok(node.ssh(as_root(old_delete, "root")))
    assert "left /var/lib/registry-data, which is not the registry's" in result.stderr
    assert node.read(f"{STORAGE}/blob") == b"blob\n"


def test_a_non_root_user_prepares_it_through_sudo(nodes):
    node = nodes.start(ADD_DEPLOY + "echo 'deploy ALL=(root) NOPASSWD: /bin/sh' > /etc/sudoers.d/deploy\n")
    command = folder_command(run_stack(config(node, entry={"user": "deploy"})))
    assert command["create"].startswith("sudo -n /bin/sh -c ")
    ok(node.run_command(command, "create", user="deploy"))
    assert os.stat(node.path(STORAGE)).st_uid == 1000


def registry_on(node, run: StackRun, root) -> Registry:
    """The registry pod on that node: its data volume is the node's folder."""
    registry = Registry(PodSource.from_run(run), root)
    pod_data = registry.path("/var/lib/registry")
    pod_data.parent.mkdir(parents=True, exist_ok=True)
    if not pod_data.is_symlink():
        pod_data.symlink_to(node.path(STORAGE))
    return registry.start()


def skopeo(*args):
    return subprocess.run(["skopeo", "--command-timeout", "60s", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("keep", [True, False])
def test_images_survive_destroy_and_up_only_when_data_is_kept(nodes, tmp_path, keep):
    node = nodes.start()
    run = run_stack(config(node, keepData=keep))
    assert run.error is None, run.error
    command = folder_command(run)
    ok(node.run_command(command, "create"))
    registry = registry_on(node, run, tmp_path / "pod")
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_text(registry.ca_pem)
    auth = tmp_path / "auth.json"
    login = base64.b64encode(f"{run.outputs['username']}:{run.outputs['password']}".encode()).decode()
    auth.write_text(json.dumps({"auths": {f"{CLUSTER_IP}:5000": {"auth": login}}}))
    write_image(tmp_path / "image", "v1", layers=2)
    target = f"docker://{CLUSTER_IP}:5000/team/app:1"
    try:
        pushed = skopeo("copy", "--dest-authfile", str(auth), "--dest-cert-dir", str(certs), f"oci:{tmp_path / 'image'}:v1", target)
        assert pushed.returncode == 0, pushed.stderr
    finally:
        registry.stop()

    ok(node.run_command(command, "delete"))  # pulumi destroy
    assert node.path(STORAGE).exists() == keep
    ok(node.run_command(command, "create"))  # a later pulumi up
    registry = registry_on(node, run, tmp_path / "pod")
    try:
        pulled = skopeo("copy", "--src-authfile", str(auth), "--src-cert-dir", str(certs), target, f"oci:{tmp_path / 'out'}:v1")
    finally:
        registry.stop()
    if keep:
        assert pulled.returncode == 0, pulled.stderr
        assert read_image(tmp_path / "out")[0] == read_image(tmp_path / "image")[0]
    else:
        assert pulled.returncode != 0 and "manifest unknown" in pulled.stderr, pulled.stderr
