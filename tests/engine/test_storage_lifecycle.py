"""storage: node with keepData false: no change of any key removes a pushed image; only destroy does.

The real Pulumi CLI and pulumi-kubernetes against a real API server, with
nodeTrust cluster (the dev stack's) on simulated nodes through TestKubelet;
the registry's pod is played there (Running and Ready, as kwok would report
it) and the real registry runs from the Deployment and Secrets the API server
holds, its data in the storage node's folder. One stack, in file order: a
push, then a new hostname, a new port and a new state format (each replaces
the node-trust DaemonSet, whose pods give the nodes back), then a switch to
nodeTrust ssh and back; after each, every blob is still in the folder. Then
destroy removes the folder, and nothing before it did.

The switch to ssh needs pulumi-command's remote.Command, which this machine
cannot build (tests/engine/toolchain.sh records why): the test sends the
folder command's create and delete over SSH itself, with the program's own
text, at the points of the update where the engine runs them (a new resource's
create before a removed resource's delete). A renamed node entry in SSH mode
is an update of that command, never a replacement: tests/unit/test_node_storage.py
shows that, and tests/node/test_node_storage.py that a create run again keeps the images.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest

from registry.node_script import STATE_FORMAT, StorageParams, remote_command, storage_program, storage_script
from tests.support.constants import NAMESPACE, STORAGE, TRUST_NAMESPACE
from tests.support.engine import toolchain_dir
from tests.support.engine.trust_world import IMAGE, TOOLS, World, trust_world
from tests.support.nodes import diff, require_tools
from tests.support.oci import write_image
from tests.support.registry_server import PodSource, Registry
from tests.support.stack import ROOT
from tests.support.trust import WITH_CONFIG_PATH

BLOBS = f"{STORAGE}/docker/registry/v2/blobs"
# What the tests of this module learn and the later ones check: the blobs pushed, the stack.
SEEN: dict = {}


def registry_pod(pod: dict) -> bool:
    return pod["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "registry"


def blobs(world: World) -> dict[str, bytes]:
    folder = world.nodes["node-a"].path(BLOBS)
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("data")} if folder.exists() else {}


def start_registry(world: World) -> Registry:
    """The registry pod as the cluster holds it, its data volume the storage node's folder."""
    api = world.cluster.api
    if world.registry is not None:
        world.registry.stop()
    source = PodSource.from_cluster(
        api.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/registry"),
        api.get(f"/api/v1/namespaces/{NAMESPACE}/services/registry"),
        api.items(f"/api/v1/namespaces/{NAMESPACE}/secrets"),
        api.items(f"/api/v1/namespaces/{NAMESPACE}/configmaps"),
    )
    registry = Registry(source, world.root / "registry")
    data = registry.path("/var/lib/registry")
    data.parent.mkdir(parents=True, exist_ok=True)
    if not data.is_symlink():
        data.symlink_to(world.nodes["node-a"].path(STORAGE))
    world.registry = registry.start()
    return registry


def up(world: World, **kwargs) -> dict[str, str]:
    result = world.project.up(**kwargs)
    assert result.code == 0, result.text + world.kubelet.logs()
    return result.changes()


def ssh_folder_command(world: World, action: str) -> str:
    """The folder command the program makes for nodeTrust ssh (registry/node_storage.py), for this stack."""
    created = world.cluster.api.items(f"/api/v1/namespaces/{TRUST_NAMESPACE}/configmaps")
    claim = next(re.search(r"STORAGE_CLAIM='([^ ]+) cluster", c["data"]["create"]).group(1)
                 for c in created if c["metadata"]["name"].startswith("registry-storage-"))
    SEEN["stack"] = claim
    return remote_command(storage_script(action, StorageParams(STORAGE, False, f"{claim} ssh")), "root")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    bin_dir = toolchain_dir()
    require_tools(TOOLS)
    root = tmp_path_factory.mktemp("storage-lifecycle")
    root.chmod(0o755)
    with trust_world(bin_dir, root, played=registry_pod) as w:
        for name in ("node-a", "node-b"):
            w.join(name, prepare=WITH_CONFIG_PATH)
        w.configure(storage="node", storageNode="node-a", keepData=False, nodeSelector={})
        try:
            yield w
        finally:
            if w.kubelet.errors:
                print("test kubelet errors:", *w.kubelet.errors[-5:], sep="\n")


def test_up_makes_the_folder_the_registrys_and_a_pushed_image_lands_in_it(world):
    up(world)
    folder = os.stat(world.nodes["node-a"].path(STORAGE))
    assert (folder.st_uid, folder.st_mode & 0o777) == (1000, 0o700)
    assert not world.nodes["node-b"].path(STORAGE).exists(), "on the storage node alone"
    world.password = world.project.outputs(show_secrets=True)["password"]
    registry = start_registry(world)
    layout = world.root / "layout"
    write_image(layout, "v1", layers=3, seed=b"storage-lifecycle")
    pushed = world.nodes["node-a"].inside(
        "skopeo", "copy", "--dest-creds", f"admin:{world.password}", f"oci:{layout}:v1",
        f"docker://{registry.name}:{registry.port}/{IMAGE}", check=False, timeout=120)
    assert pushed.returncode == 0, pushed.stderr
    SEEN["pushed"] = blobs(world)
    assert len(SEEN["pushed"]) >= 4, "three layers and a config"


@pytest.mark.parametrize("change", [{"hostname": "registry.internal"}, {"port": 5443}], ids=["hostname", "port"])
def test_a_change_that_replaces_node_trust_keeps_every_image(world, change):
    world.stack.configure(**change)
    changes = up(world)
    assert changes.get("registry-node-daemon-set") == "replace", changes
    assert "registry-node-storage" not in changes, "the folder's DaemonSet is not touched"
    assert blobs(world) == SEEN["pushed"]


def test_a_new_state_format_replaces_node_trust_and_keeps_every_image(world, tmp_path):
    # A release that raises STATE_FORMAT: this checkout's code with it raised by one.
    release = tmp_path / "release"
    for part in ("registry", "tests"):
        shutil.copytree(ROOT / part, release / part, ignore=shutil.ignore_patterns("__pycache__"))
    script = release / "registry" / "node_script.py"
    script.write_text(script.read_text().replace(f"STATE_FORMAT = {STATE_FORMAT}\n", f"STATE_FORMAT = {STATE_FORMAT + 1}\n"))
    changes = up(world, code=release)
    assert changes.get("registry-node-daemon-set") == "replace", changes
    assert "registry-node-storage" not in changes
    assert blobs(world) == SEEN["pushed"]
    assert up(world).get("registry-node-daemon-set") == "replace", "and back"
    assert blobs(world) == SEEN["pushed"]


def test_switching_to_node_trust_ssh_and_back_keeps_every_image(world):
    node = world.nodes["node-a"]
    create, delete = ssh_folder_command(world, "create"), ssh_folder_command(world, "delete")
    # To ssh: the engine creates the folder command (its create runs), then deletes the DaemonSet.
    ran = node.ssh(create, stdin=storage_program())
    assert ran.returncode == 0, ran.stderr
    world.stack.configure(nodeTrust="ssh", nodes=[{"name": "node-a", "host": node.address}],
                          sshPrivateKey=world.factory.private_key)
    changes = up(world)
    assert changes.get("registry-node-storage") == "delete", changes
    assert blobs(world) == SEEN["pushed"]
    # And back: the DaemonSet is made (its pod claims the folder), then the command is deleted.
    for key in ("nodes", "sshPrivateKey"):
        world.stack.config.pop(key)
        world.project.remove(f"registry:{key}")
    world.stack.configure(nodeTrust="cluster")
    changes = up(world)
    assert changes.get("registry-node-storage") == "create", changes
    ran = node.ssh(delete, stdin=storage_program())
    assert ran.returncode == 0, ran.stderr
    assert f"kept: still used by {SEEN['stack']} cluster {TRUST_NAMESPACE}" in ran.stderr
    assert blobs(world) == SEEN["pushed"]
    # The registry still serves it, by name, on every node.
    start_registry(world)
    for name in ("node-a", "node-b"):
        pulled = world.nodes[name].inside(
            "skopeo", "inspect", "--creds", f"admin:{world.password}",
            f"docker://{world.registry.name}:{world.registry.port}/{IMAGE}", check=False, timeout=60)
        assert pulled.returncode == 0, (name, pulled.stderr)


def test_destroy_with_keep_data_false_removes_the_folder_and_gives_every_node_back(world):
    world.registry.stop()
    destroy = world.project.destroy()
    assert destroy.code == 0, destroy.text + world.kubelet.logs()
    assert not world.nodes["node-a"].path(STORAGE).exists()
    for name, node in world.nodes.items():
        assert diff(world.before[name], node.snapshot()) == [], name
