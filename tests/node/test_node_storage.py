"""storage: node, for clusters without a storage provisioner: the data folder on one node,
prepared over real OpenSSH by the program's own command, kept or removed on destroy as
`keepData` says, and a real registry that finds its images again after destroy and up.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support.nodes import NEEDED, diff, make_factory, require_tools
from tests.support.oci import read_image, write_image
from tests.support.registry_server import REGISTRY_TOOL, PodSource, Registry
from tests.support.stack import StackRun, run_stack
from tests.support.trust import ADD_DEPLOY

STORAGE = "/var/lib/registry-data"
EXTRA = ("/var/lib/registry-node-trust", STORAGE, "/srv")
COMMAND = "command:remote:Command"
CLUSTER_IP = "127.0.10.1"


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
    require_tools({**NEEDED, **REGISTRY_TOOL, "skopeo": "skopeo"})
    factory = make_factory()
    yield factory
    factory.close()


def ok(result):
    assert result.returncode == 0, f"stdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def test_create_prepares_the_folder_for_the_registry_user_and_a_second_run_changes_nothing(nodes):
    node = nodes.start()
    before = node.snapshot(extra=EXTRA)
    command = folder_command(run_stack(config(node, keepData=False)))
    ok(node.ssh(command["create"]))
    st = os.stat(node.path(STORAGE))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 1000, 0o700)
    created = node.snapshot(extra=EXTRA)
    ok(node.ssh(command["create"]))
    assert diff(created, node.snapshot(extra=EXTRA)) == []
    ok(node.ssh(command["delete"]))
    assert diff(before, node.snapshot(extra=EXTRA)) == [], "keepData false: the node is as it was"


def test_a_folder_holding_someone_elses_files_is_refused_and_never_removed(nodes):
    node = nodes.start("mkdir -p /srv/data && echo mine > /srv/data/notes.txt\n")
    before = node.snapshot(extra=EXTRA)
    command = folder_command(run_stack(config(node, storagePath="/srv/data", keepData=False)))
    result = node.ssh(command["create"])
    assert result.returncode != 0 and "holds files that are not the registry's" in result.stderr, result.stderr
    ok(node.ssh(command["delete"]))
    assert diff(before, node.snapshot(extra=EXTRA)) == []


@pytest.mark.parametrize("planted", ["marker", "folder"])
def test_a_link_planted_by_the_registry_user_is_never_followed_and_shadow_stays_roots(nodes, planted):
    # uid 1000 owns the folder (the registry's container, or the node's user
    # 1000) and can replace the marker with a link; the next up runs as root.
    node = nodes.start()
    command = folder_command(run_stack(config(node)))
    ok(node.ssh(command["create"]))
    shadow = os.stat(node.path("/etc/shadow"))
    if planted == "marker":
        node.sh(f"rm {STORAGE}/.registry-storage && ln -s /etc/shadow {STORAGE}/.registry-storage")
    else:
        node.sh(f"rm -rf {STORAGE} && ln -s /etc {STORAGE}")
    result = node.ssh(command["create"])
    assert result.returncode != 0 and "not" in result.stderr, result.stderr
    after = os.stat(node.path("/etc/shadow"))
    assert (after.st_uid, after.st_gid, after.st_mode) == (shadow.st_uid, shadow.st_gid, shadow.st_mode)
    assert os.stat(node.path("/etc")).st_uid == 0


def test_a_changed_ssh_user_host_or_port_is_no_replacement_so_no_delete_runs():
    # pulumi-command replaces on a trigger change, delete first here: with
    # keepData false the old delete would remove the images.
    base = {"storage": "node", "storageNode": "cp", "sshPrivateKey": "k", "keepData": False}
    before = folder_command(run_stack({**base, "nodes": [{"name": "cp", "host": "192.168.56.10"}]}))
    for entry in ({"host": "192.168.56.99"}, {"host": "192.168.56.10", "port": 2222}, {"host": "192.168.56.10", "user": "deploy"}):
        after = folder_command(run_stack({**base, "nodes": [{"name": "cp", **entry}]}))
        assert after["triggers"] == before["triggers"], entry
    moved = folder_command(run_stack({**base, "storagePath": "/srv/registry", "nodes": [{"name": "cp", "host": "192.168.56.10"}]}))
    assert moved["triggers"] != before["triggers"], "another folder is a replacement: the old one is deleted"


def test_a_non_root_user_prepares_it_through_sudo(nodes):
    node = nodes.start(ADD_DEPLOY + "echo 'deploy ALL=(root) NOPASSWD: /bin/sh' > /etc/sudoers.d/deploy\n")
    command = folder_command(run_stack(config(node, entry={"user": "deploy"})))
    assert command["create"].startswith("sudo -n /bin/sh -c ")
    ok(node.ssh(command["create"], user="deploy"))
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
    ok(node.ssh(command["create"]))
    registry = registry_on(node, run, tmp_path / "pod")
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_text(registry.ca_pem)
    auth = tmp_path / "auth.json"
    pull = run.one("kubernetes:core/v1:Secret", "registry-pull-default").inputs["stringData"][".dockerconfigjson"]
    auths = json.loads(pull)["auths"]
    auth.write_text(json.dumps({"auths": {f"{CLUSTER_IP}:5000": auths["image-registry:5000"]}}))
    write_image(tmp_path / "image", "v1", layers=2)
    target = f"docker://{CLUSTER_IP}:5000/team/app:1"
    try:
        pushed = skopeo("copy", "--dest-authfile", str(auth), "--dest-cert-dir", str(certs), f"oci:{tmp_path / 'image'}:v1", target)
        assert pushed.returncode == 0, pushed.stderr
    finally:
        registry.stop()

    ok(node.ssh(command["delete"]))  # pulumi destroy
    assert node.path(STORAGE).exists() == keep
    ok(node.ssh(command["create"]))  # a later pulumi up
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
