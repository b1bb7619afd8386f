"""storage: node in what the program registers: the pod pinned to the node with the
folder; the folder's command, which runs after node trust, is never replaced and
has a delete that follows keepData."""

from __future__ import annotations

from registry.node_script import storage_program
from tests.support.constants import COMMAND, STORAGE
from tests.support.stack import StackRun, run_stack

NODES = [{"name": "cp", "host": "192.168.56.10"}, {"name": "worker-1", "host": "192.168.56.11"}]


def folder_command(run: StackRun) -> dict:
    return run.one(COMMAND, "registry-storage-folder").inputs


def test_storage_node_pins_the_pod_to_the_node_and_mounts_its_folder():
    run = run_stack({"storage": "node", "storageNode": "worker-1", "sshPrivateKey": "k", "nodeSelector": {"disktype": "ssd"},
                     "nodes": NODES})
    assert run.error is None, run.error
    assert run.of_type("kubernetes:core/v1:PersistentVolumeClaim") == []
    pod = run.one("kubernetes:apps/v1:Deployment").inputs["spec"]["template"]["spec"]
    assert {"name": "data", "hostPath": {"path": STORAGE, "type": "Directory"}} in pod["volumes"]
    assert pod["nodeSelector"] == {"disktype": "ssd", "kubernetes.io/hostname": "worker-1"}
    command = folder_command(run)
    assert command["connection"]["host"] == "192.168.56.11" and "connection" in run.one(COMMAND, "registry-storage-folder").secret_paths
    assert command["stdin"] == storage_program()
    assert run.one(COMMAND, "registry-storage-folder").urn in run.one("kubernetes:apps/v1:Deployment").dependencies
    assert "STORAGE_KEEP=true" in command["delete"], "keepData defaults to true"
    assert "organization/registry/test ssh" in command["create"].split("STORAGE_CLAIM=", 1)[1].split("\n", 1)[0]
    job = run.one("kubernetes:batch/v1:CronJob").inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job["volumes"] == pod["volumes"] and job["nodeSelector"] == pod["nodeSelector"]


def test_the_folder_is_prepared_after_that_node_trusts_the_registry():
    # The node program's state root is root's before any folder is handed to uid 1000.
    run = run_stack({"storage": "node", "storageNode": "worker-1", "sshPrivateKey": "k", "nodes": NODES})
    folder = run.one(COMMAND, "registry-storage-folder")
    assert run.one(COMMAND, "registry-node-worker-1").urn in folder.dependencies


def test_the_folders_command_is_never_replaced_so_no_change_runs_its_delete():
    # pulumi-command runs the old delete first on a replacement, which would remove the images
    # with keepData false. A change of folder, node, keepData or node entry is an update.
    base = {"storage": "node", "storageNode": "cp", "sshPrivateKey": "k", "keepData": False,
            "nodes": [{"name": "cp", "host": "192.168.56.10"}]}
    for change in ({}, {"storagePath": "/srv/registry"}, {"keepData": True},
                   {"storageNode": "cp2", "nodes": [{"name": "cp2", "host": "192.168.56.10"}]}):
        registration = run_stack({**base, **change}).one(COMMAND, "registry-storage-folder")
        assert "triggers" not in registration.inputs, change
        # pulumi-command declares triggers replaceOnChanges; ignored, an earlier release's change nothing.
        assert registration.ignore_changes == ["triggers"]
        assert not registration.delete_before_replace


def test_keep_data_false_makes_the_last_delete_remove_the_folder():
    base = {"storage": "node", "storageNode": "cp", "sshPrivateKey": "k", "nodes": [{"name": "cp", "host": "192.168.56.10"}]}
    kept, removed = folder_command(run_stack(base)), folder_command(run_stack({**base, "keepData": False}))
    assert "STORAGE_KEEP=false" in removed["delete"] and "STORAGE_KEEP=true" in kept["delete"]
