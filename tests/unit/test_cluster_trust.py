"""nodeTrust cluster under mocks: the config it takes and refuses, and the objects it makes.

The engine layer (tests/engine/test_cluster_trust.py) runs the same objects
through the real engine and API server, with the pods' command on simulated
nodes; this layer pins their shape, in seconds.
"""

from __future__ import annotations

import json

import pytest

from registry.cluster_trust import DELETE_TIMEOUT_SECONDS
from registry.config.load import SettingsError, parse_settings
from registry.config.model import DEFAULT_NODE_TRUST_IMAGE
from registry.names import NODE_TRUST_NAME, NODE_TRUST_RECORD_ANNOTATION
from registry.node_script import CLUSTER_ENTRY, POD_SCRIPT, program, storage_program
from registry.trust_pod import (
    ACCOUNT_DIR,
    CAPABILITIES,
    GRACE_SECONDS,
    ROLLOUT_TIMEOUT_SECONDS,
    STORAGE_NAME,
    files_name,
)
from tests.support.constants import TRUST_NAMESPACE
from tests.support.stack import FakeCluster, run_stack

DAEMON_SET = "kubernetes:apps/v1:DaemonSet"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
CLUSTER = {"nodeTrust": "cluster", "users": ["admin"]}


def problems(values: dict) -> str:
    raw = {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    with pytest.raises(SettingsError) as error:
        parse_settings(raw.get, environ={"SSH_AUTH_SOCK": "/tmp/agent"})
    return str(error.value)


def settings(values: dict):
    raw = {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    return parse_settings(raw.get, environ={})


def daemon_set(run, name: str = "registry-node-daemon-set") -> dict:
    return next(r for r in run.of_type(DAEMON_SET) if r.name == name).inputs


def pod(run, name: str = "registry-node-daemon-set") -> dict:
    return daemon_set(run, name)["spec"]["template"]["spec"]


def files(run, name: str = "registry-node-files") -> dict:
    return next(r for r in run.of_type(CONFIG_MAP) if r.name == name).inputs


# ---- config ----------------------------------------------------------------------------


def test_cluster_needs_no_ssh_key_and_no_node_list():
    assert settings({"nodeTrust": "cluster"}).node_trust == "cluster"
    # Nodes may still be listed, for the external endpoints; no key is asked for.
    listed = settings({"nodeTrust": "cluster", "nodes": [{"name": "n1", "host": "10.0.0.5"}]})
    assert listed.external_endpoints == ["10.0.0.5:30500"]


def test_an_unknown_node_trust_is_refused_naming_the_accepted_values():
    assert "registry:nodeTrust 'daemonset' must be one of ssh, cluster" in problems({"nodeTrust": "daemonset"})


@pytest.mark.parametrize("key, value", [
    ("sshPrivateKey", "-----BEGIN OPENSSH PRIVATE KEY-----"),
    ("sshAgent", "true"),
    ("sshBastion", {"host": "10.0.0.1"}),
])
def test_ssh_settings_with_cluster_are_refused_as_unused(key, value):
    text = problems({**CLUSTER, key: value})
    assert f"registry:{key} is set, but registry:nodeTrust is cluster" in text
    assert f"pulumi config rm registry:{key}" in text


def test_a_node_trust_image_with_ssh_is_refused():
    assert "registry:nodeTrustImage 'my/curl:1' is set, but registry:nodeTrust is ssh" in problems(
        {"nodeTrustImage": "my/curl:1"}
    )


def test_with_cluster_the_storage_node_is_any_node_of_the_cluster_and_must_be_a_node_name():
    chosen = settings({"nodeTrust": "cluster", "storage": "node", "storageNode": "worker-3"})
    assert chosen.storage_node is not None and chosen.storage_node.name == "worker-3"
    assert "registry:storageNode 'Worker_3' must be the name of a node of the cluster" in problems(
        {**CLUSTER, "storage": "node", "storageNode": "Worker_3"}
    )


def test_with_cluster_a_namespace_too_long_for_the_daemon_sets_is_refused():
    assert "with registry:nodeTrust cluster it must be at most 52" in problems({**CLUSTER, "namespace": "n" * 53})


# ---- the objects -------------------------------------------------------------------------


def test_cluster_makes_no_ssh_command_and_the_registry_pods_wait_for_the_daemon_set():
    run = run_stack(CLUSTER)
    assert run.error is None, run.error
    assert run.of_type("command:remote:Command") == []
    deployment = run.one("kubernetes:apps/v1:Deployment")
    assert run.one(DAEMON_SET).urn in deployment.dependencies


def test_the_daemon_set_runs_in_a_privileged_namespace_of_its_own_and_the_registrys_stays_restricted():
    run = run_stack(CLUSTER)
    namespaces = {r.inputs["metadata"]["name"]: r.inputs["metadata"]["labels"] for r in run.of_type("kubernetes:core/v1:Namespace")}
    assert namespaces[TRUST_NAMESPACE]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert namespaces["registry"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert daemon_set(run)["metadata"]["namespace"] == TRUST_NAMESPACE


def test_the_pods_tolerate_every_taint_and_run_as_root_with_four_capabilities_not_privileged():
    spec = pod(run_stack(CLUSTER))
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert "initContainers" not in spec
    (container,) = spec["containers"]
    security = container["securityContext"]
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    assert security["runAsUser"] == 0 and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"], "add": list(CAPABILITIES)}
    assert container["image"] == DEFAULT_NODE_TRUST_IMAGE
    assert {"name": "host", "hostPath": {"path": "/", "type": "Directory"}} in spec["volumes"]
    assert spec["terminationGracePeriodSeconds"] == GRACE_SECONDS
    assert "imagePullSecrets" not in spec


def test_one_container_runs_create_until_it_succeeds_and_is_ready_only_then_so_a_failed_node_is_still_given_back():
    (container,) = pod(run_stack(CLUSTER))["containers"]
    assert container["command"] == ["/bin/sh", "/etc/registry-node-trust/pod.sh", "run"]
    assert container["readinessProbe"]["exec"]["command"] == ["/bin/sh", "/etc/registry-node-trust/pod.sh", "ready"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GIVE_BACK"] == "torn-down" and env["DAEMONSET"] == NODE_TRUST_NAME


def test_a_node_that_is_down_holds_back_no_other_node_and_up_waits_for_it_a_bounded_time():
    ds = run_stack(CLUSTER).one(DAEMON_SET)
    assert ds.inputs["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}}
    assert ds.custom_timeouts == {"create": f"{ROLLOUT_TIMEOUT_SECONDS}s", "update": f"{ROLLOUT_TIMEOUT_SECONDS}s",
                                  "delete": f"{DELETE_TIMEOUT_SECONDS}s"}


def test_the_pods_may_read_their_daemon_sets_and_namespace_and_list_pods_and_make_events_in_their_namespace_only():
    run = run_stack(CLUSTER)
    role = run.one("kubernetes:rbac.authorization.k8s.io/v1:Role").inputs
    assert role["rules"] == [
        {"apiGroups": ["apps"], "resources": ["daemonsets"], "resourceNames": [NODE_TRUST_NAME, STORAGE_NAME], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    assert role["metadata"]["namespace"] == TRUST_NAMESPACE, "a Role, in the DaemonSet's namespace alone"
    binding = run.one("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding").inputs
    subjects = [{"kind": "ServiceAccount", "name": NODE_TRUST_NAME, "namespace": TRUST_NAMESPACE}]
    assert binding["subjects"] == subjects
    # A namespace deleted by hand: the pods see it going, and give their nodes back.
    cluster_role = run.one("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole").inputs
    assert cluster_role["rules"] == [{"apiGroups": [""], "resources": ["namespaces"], "resourceNames": [TRUST_NAMESPACE], "verbs": ["get"]}]
    cluster_binding = run.one("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding").inputs
    assert cluster_binding["roleRef"]["name"] == cluster_role["metadata"]["name"] == f"{NODE_TRUST_NAME}:{TRUST_NAMESPACE}"
    assert cluster_binding["subjects"] == subjects
    assert pod(run)["serviceAccountName"] == NODE_TRUST_NAME


def test_the_pods_run_the_same_program_as_ssh_with_the_stack_and_cluster_as_owner():
    run = run_stack(CLUSTER)
    cm = files(run)
    data = cm["data"]
    assert data["program"] == program() and data["pod.sh"] == POD_SCRIPT
    assert "REG_ACTION=create" in data["create"] and "REG_ACTION=delete" in data["delete"]
    assert f"REG_ENTRY={CLUSTER_ENTRY}" in data["create"] and "REG_STACK=organization/registry/test" in data["create"]
    assert "REG_IP=10.96.0.42" in data["create"]
    assert cm["immutable"] is True and cm["metadata"]["name"] == files_name(NODE_TRUST_NAME, data)
    assert pod(run)["volumes"][1]["configMap"]["name"] == cm["metadata"]["name"]


def test_a_ca_rotation_rolls_the_pods_with_new_files_and_keeps_the_daemon_set():
    first = run_stack(CLUSTER)
    second = run_stack({**CLUSTER, "caGeneration": 2})
    assert files(first)["metadata"]["name"] != files(second)["metadata"]["name"]
    before, after = daemon_set(first), daemon_set(second)
    assert before["metadata"]["annotations"] == after["metadata"]["annotations"]


def test_a_new_hostname_replaces_the_daemon_set_so_the_old_pods_give_the_old_name_back_first():
    ds = run_stack({**CLUSTER, "hostname": "registry.internal"}).one(DAEMON_SET)
    assert ds.inputs["metadata"]["annotations"][NODE_TRUST_RECORD_ANNOTATION].split()[1] == "registry.internal:5000"
    assert ds.delete_before_replace


def test_an_image_pull_secret_reaches_the_daemon_sets_namespace():
    run = run_stack({**CLUSTER, "imagePullSecret": json.dumps({"auths": {"r.example": {"auth": "eDp5"}}})})
    secrets = [r for r in run.of_type("kubernetes:core/v1:Secret") if r.inputs["metadata"]["name"] == "registry-image-pull"]
    by_namespace = {s.inputs["metadata"]["namespace"]: s for s in secrets}
    assert set(by_namespace) == {"registry", TRUST_NAMESPACE}
    assert by_namespace[TRUST_NAMESPACE].secret_paths, "the .dockerconfigjson travels as a secret"
    assert pod(run)["imagePullSecrets"] == [{"name": "registry-image-pull"}]


def test_with_storage_node_the_folder_is_prepared_by_a_daemon_set_of_its_own_on_that_node():
    run = run_stack({**CLUSTER, "storage": "node", "storageNode": "worker-3", "keepData": "false"})
    data = files(run, "registry-node-storage-files")["data"]
    assert data["program"] == storage_program() and data["pod.sh"] == POD_SCRIPT
    assert "STORAGE_ACTION=create" in data["create"] and "STORAGE_KEEP=false" in data["delete"]
    assert "STORAGE_CLAIM='organization/registry/test cluster registry-node-trust'" in data["create"]
    spec = pod(run, "registry-node-storage")
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "worker-3"}
    (container,) = spec["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["DAEMONSET"], env["GIVE_BACK"]) == (STORAGE_NAME, "deleted")
    assert set(files(run)["data"]) == {"program", "create", "delete", "run", "pod.sh"}, "node trust holds no folder"
    deployment = run.one("kubernetes:apps/v1:Deployment")
    assert deployment.inputs["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"] == "worker-3"
    storage = next(r for r in run.of_type(DAEMON_SET) if r.name == "registry-node-storage")
    assert storage.urn in deployment.dependencies
    assert run.one(DAEMON_SET, "registry-node-daemon-set").urn in storage.dependencies, "after node trust"


@pytest.mark.parametrize("change", [{"hostname": "registry.internal"}, {"port": "5443"}, {"caGeneration": 2}])
def test_what_replaces_or_rolls_node_trust_leaves_the_data_folders_daemon_set_as_it_is(change):
    base = {**CLUSTER, "storage": "node", "storageNode": "worker-3", "keepData": "false"}
    before, after = run_stack(base), run_stack({**base, **change})
    assert daemon_set(before, "registry-node-storage")["spec"] == daemon_set(after, "registry-node-storage")["spec"]
    storage = next(r for r in after.of_type(DAEMON_SET) if r.name == "registry-node-storage")
    assert not storage.replace_on_changes and not storage.delete_before_replace, "never replaced"
    assert "annotations" not in storage.inputs["metadata"]


def test_destroy_waits_for_the_daemon_set_a_bounded_time():
    ds = run_stack(CLUSTER).one(DAEMON_SET)
    assert DELETE_TIMEOUT_SECONDS > GRACE_SECONDS
    assert ds.delete_timeout == f"{DELETE_TIMEOUT_SECONDS}s"
    assert ds.replace_on_changes == ["metadata.annotations"]


def test_without_nodes_a_workstation_reaches_the_cluster_nodes_by_their_internal_ip():
    cluster = FakeCluster(missing={"registry", TRUST_NAMESPACE}, ranges=["10.96.0.0/12"], addresses={"kind-control-plane": "192.168.49.2", "kind-worker": "192.168.49.3"})
    run = run_stack(CLUSTER, cluster=cluster)
    assert run.error is None, run.error
    assert run.outputs["externalEndpoints"] == ["192.168.49.2:30500", "192.168.49.3:30500"]
    assert "docker login 192.168.49.2:30500" in run.outputs["loginCommand"]
    request = run.one("tls:index/certRequest:CertRequest").inputs
    assert {"192.168.49.2", "192.168.49.3"} <= set(request["ipAddresses"])


def test_a_daemon_set_namespace_that_is_someone_elses_is_refused_before_anything_is_created():
    cluster = FakeCluster(missing={"registry"}, ranges=["10.96.0.0/12"])
    run = run_stack(CLUSTER, cluster=cluster)
    assert "the namespace its DaemonSet needs, 'registry-node-trust', already exists and is not this stack's" in str(run.error)
    assert run.resources == []


def test_the_pods_api_token_is_the_accounts_own_which_outlives_a_pods_deletion_time():
    run = run_stack(CLUSTER)
    token = next(r for r in run.of_type("kubernetes:core/v1:Secret") if r.name == "registry-node-token").inputs
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == NODE_TRUST_NAME
    spec = pod(run)
    assert spec["automountServiceAccountToken"] is False
    assert {"name": "account", "secret": {"secretName": "registry-node-trust-token", "defaultMode": 0o400}} in spec["volumes"]
    for container in spec["containers"]:
        assert {"name": "account", "mountPath": ACCOUNT_DIR, "readOnly": True} in container["volumeMounts"]


def test_only_ip_addresses_a_node_reports_become_endpoints_and_the_login_line_is_quoted():
    # A kubelet writes its own Node's status: the API server takes any text as an InternalIP.
    reported = {"a": "10.0.0.5;touch /tmp/pwned;", "b": "registry-1.docker.io", "c": "fd00:0:0::7", "d": "192.168.49.3"}
    cluster = FakeCluster(missing={"registry", TRUST_NAMESPACE}, ranges=["10.96.0.0/12"], addresses=reported)
    warned: list[str] = []
    run = run_stack(CLUSTER, cluster=cluster, warnings=warned)
    assert run.error is None, run.error
    assert run.outputs["externalEndpoints"] == ["[fd00::7]:30500", "192.168.49.3:30500"]
    assert run.outputs["loginCommand"] == (
        "pulumi stack output password --show-secrets | docker login '[fd00::7]:30500' --username admin --password-stdin")
    request = run.one("tls:index/certRequest:CertRequest").inputs
    assert "registry-1.docker.io" not in request["dnsNames"] and not any("pwned" in ip for ip in request["ipAddresses"])
    assert [w for w in warned if "InternalIP" in w] == [
        "node a reports the InternalIP '10.0.0.5;touch /tmp/pwned;', which is not an IP address: it is left out of "
        "externalEndpoints and the server certificate",
        "node b reports the InternalIP 'registry-1.docker.io', which is not an IP address: it is left out of "
        "externalEndpoints and the server certificate",
    ]


def test_nodes_that_report_no_internal_ip_leave_no_external_endpoint_and_are_warned_of():
    cluster = FakeCluster(missing={"registry", TRUST_NAMESPACE}, ranges=["10.96.0.0/12"], addresses={})
    warned: list[str] = []
    run = run_stack(CLUSTER, cluster=cluster, warnings=warned)
    assert run.error is None and run.outputs["externalEndpoints"] == []
    assert any(w.startswith("no node of the cluster reports an InternalIP") for w in warned), warned
