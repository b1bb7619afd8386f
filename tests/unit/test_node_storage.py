"""storage: node in what the program registers: the pod pinned to the node with the
folder, the folder command's delete following keepData."""

from __future__ import annotations

from tests.support.stack import StackRun, run_stack

STORAGE = "/var/lib/registry-data"
COMMAND = "command:remote:Command"


def folder_command(run: StackRun) -> dict:
    return run.one(COMMAND, "registry-storage-folder").inputs


def test_storage_node_pins_the_pod_to_the_node_and_mounts_its_folder():
    run = run_stack({"storage": "node", "storageNode": "worker-1", "sshPrivateKey": "k", "nodeSelector": {"disktype": "ssd"},
                     "nodes": [{"name": "cp", "host": "192.168.56.10"}, {"name": "worker-1", "host": "192.168.56.11"}]})
    assert run.error is None, run.error
    assert run.of_type("kubernetes:core/v1:PersistentVolumeClaim") == []
    pod = run.one("kubernetes:apps/v1:Deployment").inputs["spec"]["template"]["spec"]
    assert {"name": "data", "hostPath": {"path": STORAGE, "type": "Directory"}} in pod["volumes"]
    assert pod["nodeSelector"] == {"disktype": "ssd", "kubernetes.io/hostname": "worker-1"}
    command = folder_command(run)
    assert command["connection"]["host"] == "192.168.56.11" and "connection" in run.one(COMMAND, "registry-storage-folder").secret_paths
    assert run.one(COMMAND, "registry-storage-folder").urn in run.one("kubernetes:apps/v1:Deployment").dependencies
    assert "kept" in command["delete"], "keepData defaults to true"
    job = run.one("kubernetes:batch/v1:CronJob").inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job["volumes"] == pod["volumes"] and job["nodeSelector"] == pod["nodeSelector"]


def test_keep_data_false_makes_destroy_remove_the_folder_and_changes_no_trigger():
    base = {"storage": "node", "storageNode": "cp", "sshPrivateKey": "k", "nodes": [{"name": "cp", "host": "192.168.56.10"}]}
    kept, removed = folder_command(run_stack(base)), folder_command(run_stack({**base, "keepData": False}))
    assert "rm -rf" in removed["delete"] and "rm -rf" not in kept["delete"]
    assert kept["triggers"] == removed["triggers"], "switching keepData updates in place; the newest delete is the one that runs"
