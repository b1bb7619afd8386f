"""The cluster is read before anything is created (registry/cluster/).

Under mocks, with a cluster of the test's making (tests/support/stack.py FakeCluster).
The real API server's side is in tests/engine/test_engine.py: a missing namespace, a
namespace that is someone else's and an account that lists other pull secrets
stop `pulumi up` with nothing created, and the program's own namespace passes
on the second run.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from registry.cluster.checks import cluster_problems
from registry.cluster.kubernetes import KubernetesView
from registry.cluster.view import CannotRead, ServiceView
from registry.config.types import KubeAccess, SettingsError
from tests.support.stack import FakeCluster, run_stack, settings_from

BASE = {"serviceCidr": "10.96.0.0/12", "pullSecretNamespaces": ["registry", "apps", "ci"]}


def refused(run) -> str:
    assert isinstance(run.error, SettingsError), run.error
    assert run.resources == [], "nothing registered"
    return str(run.error)


def test_a_missing_pull_secret_namespace_stops_the_program_before_any_resource_naming_the_fix():
    message = refused(run_stack(BASE, cluster=FakeCluster(missing={"registry", "apps"})))
    assert "registry:pullSecretNamespaces lists 'apps', a namespace that does not exist" in message
    assert "kubectl create namespace apps" in message and "or take it off the list" in message
    assert "'ci'" not in message, "only the missing one is named"


def test_every_problem_is_named_in_one_message():
    cluster = FakeCluster(missing={"registry", "apps", "ci"}, classes={"standard": True})
    message = refused(run_stack({**BASE, "storageClass": "fast"}, cluster=cluster))
    assert message.count("\n  ") == 3, message
    assert "'apps'" in message and "'ci'" in message and "registry:storageClass is 'fast'" in message


def test_the_registry_namespace_that_exists_and_is_someone_elses_is_refused():
    cluster = FakeCluster(missing=set(), labels={"registry": {"team": "payments"}})
    message = refused(run_stack(BASE, cluster=cluster))
    assert "registry:namespace is 'registry', a namespace that already exists and that this program did not create" in message
    assert "deletes it, with everything in it, on destroy" in message


def test_the_registry_namespace_from_an_earlier_up_passes():
    cluster = FakeCluster(missing=set(), labels={"registry": {**earlier_up(), "x": "y"}})
    run = run_stack(BASE, cluster=cluster)
    assert run.error is None, run.error


def test_an_account_that_lists_other_pull_secrets_is_refused_before_anything_when_accounts_are_patched():
    cluster = FakeCluster(account_secrets={"apps": ["mirror", "vendor"]})
    config = {**BASE, "serviceAccountPullSecret": True}
    message = refused(run_stack(config, cluster=cluster))
    assert "the default ServiceAccount of 'apps' already lists pull secrets (mirror, vendor)" in message
    assert "set serviceAccountPullSecret false" in message
    assert run_stack(BASE, cluster=cluster).error is None, "without the patch the account is not read"


def test_an_account_that_lists_ours_already_passes_on_the_next_run():
    cluster = FakeCluster(account_secrets={"apps": ["registry-pull-secret", "added-later"]})
    assert run_stack({**BASE, "serviceAccountPullSecret": True}, cluster=cluster).error is None


def test_an_account_not_made_yet_is_a_retry_not_a_patch_that_fails():
    cluster = FakeCluster()
    cluster.account_pull_secrets = lambda namespace: None if namespace == "ci" else []
    message = refused(run_stack({**BASE, "serviceAccountPullSecret": True}, cluster=cluster))
    assert "namespace 'ci' has no default ServiceAccount yet" in message and "run again in a moment" in message


def test_a_storage_class_that_does_not_exist_is_refused_with_the_ones_that_do():
    cluster = FakeCluster(classes={"local-path": True, "nfs": False})
    message = refused(run_stack({**BASE, "storageClass": "fast-ssd"}, cluster=cluster))
    assert "registry:storageClass is 'fast-ssd', and the cluster has no such StorageClass (it has: local-path, nfs)" in message


def test_no_default_storage_class_is_refused_with_storage_node_as_the_way_out():
    message = refused(run_stack(BASE, cluster=FakeCluster(classes={"nfs": False})))
    assert "registry:storage is pvc with no storageClass, and the cluster has no default StorageClass" in message
    assert "set registry:storage to node, with registry:storageNode" in message
    assert run_stack({**BASE, "storageClass": "nfs"}, cluster=FakeCluster(classes={"nfs": False})).error is None


def test_a_claim_bound_by_an_earlier_up_needs_no_default_storage_class():
    """An existing stack on a volume made by hand is not refused after an upgrade."""
    cluster = FakeCluster(classes={}, objects={("PersistentVolumeClaim", "registry", "registry-data"): {}})
    assert run_stack(BASE, cluster=cluster).error is None


@pytest.mark.parametrize("storage", [{"storage": "s3", "s3": {"bucket": "images", "region": "eu-west-1"}},
                                     {"storage": "node", "storageNode": "n1", "nodes": [{"name": "n1", "host": "10.0.0.5"}]}])
def test_storage_that_needs_no_class_does_not_read_classes(storage):
    cluster = FakeCluster(classes={})
    cluster.storage_classes = lambda: pytest.fail("storage classes read")
    problems, warnings = cluster_problems(settings_from({**BASE, **storage, "sshPrivateKey": "k"}), cluster)
    assert problems == [] and warnings == []


def test_a_cluster_that_cannot_be_read_is_a_warning_for_preview_and_stops_up_before_anything_is_created():
    warned: list[str] = []
    preview = run_stack(BASE, cluster=FakeCluster(unreadable=True), preview=True, warnings=warned)
    assert preview.error is None and preview.of_type("kubernetes:core/v1:Namespace")
    assert any("could not read the cluster" in w and "pulumi up will stop here" in w for w in warned), warned
    message = refused(run_stack(BASE, cluster=FakeCluster(unreadable=True)))
    assert message.startswith("could not read the cluster to check the config before creating anything "
                              "(dial tcp 127.0.0.1:6443: connect: connection refused); nothing was created")
    assert "registry:clusterCheck false" in message


def test_with_cluster_check_false_nothing_is_read_and_every_run_says_so():
    cluster = FakeCluster(unreadable=True)
    warned: list[str] = []
    run = run_stack({**BASE, "clusterCheck": False}, cluster=cluster, warnings=warned)
    assert run.error is None and run.of_type("kubernetes:core/v1:Namespace")
    assert [w for w in warned if "clusterCheck" in w] == [
        "registry:clusterCheck is false: the cluster was not read before creating anything, so nothing of what "
        "docs/configuration.md lists was checked (namespaces, Services, storage, nodes)"]


def test_an_api_server_that_hangs_is_one_short_wait_and_one_readable_line(tmp_path):
    # It accepts connections and never answers: a TLS handshake that never ends.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG.replace("127.0.0.1:6443", f"127.0.0.1:{port}"))
    try:
        view = KubernetesView.reaching(KubeAccess(str(path)))
        started = time.monotonic()
        with pytest.raises(CannotRead) as caught:
            view.namespace_labels("registry")
        waited = time.monotonic() - started
    finally:
        stop.set()
        thread.join()
        for sock in (*held, server):
            sock.close()
    assert str(caught.value) == f"the API server at https://127.0.0.1:{port} did not answer within 5 s"
    assert waited < 20, f"one try, not the client's retries ({waited:.0f} s)"


def test_a_check_whose_read_fails_is_skipped_with_a_warning_and_the_others_still_refuse():
    cluster = FakeCluster(missing={"registry", "apps"})

    def forbidden():
        raise CannotRead("403 Forbidden")

    cluster.storage_classes = forbidden
    problems, warnings = cluster_problems(settings_from(BASE), cluster)
    assert len(problems) == 1 and "'apps'" in problems[0]
    assert warnings == ["could not check the storage class (403 Forbidden); going on"]


def test_a_pull_secret_name_taken_by_someone_else_is_refused_and_one_made_by_pulumi_passes():
    theirs = FakeCluster(objects={("Secret", "ci", "registry-pull-secret"): {"team": "ci"}})
    message = refused(run_stack(BASE, cluster=theirs))
    assert "registry:pullSecretNamespaces lists 'ci', which already has a Secret registry-pull-secret" in message
    assert "kubectl -n ci delete secret registry-pull-secret" in message
    ours = FakeCluster(objects={("Secret", "ci", "registry-pull-secret"): {"app.kubernetes.io/managed-by": "pulumi"}})
    assert run_stack(BASE, cluster=ours).error is None


def test_a_discovery_config_map_of_another_registry_is_refused_unless_discovery_is_off():
    kind = FakeCluster(objects={("ConfigMap", "kube-public", "local-registry-hosting"): {}})
    message = refused(run_stack(BASE, cluster=kind))
    assert "registry:discovery is true, but the ConfigMap kube-public/local-registry-hosting already exists" in message
    assert "set registry:discovery false" in message
    assert run_stack({**BASE, "discovery": False}, cluster=kind).error is None


def test_a_cluster_ip_outside_the_clusters_service_range_is_refused_naming_the_range():
    cluster = FakeCluster(ranges=["10.43.0.0/16"])
    message = refused(run_stack({**BASE, "clusterIp": "10.96.0.50"}, cluster=cluster))
    assert "registry:clusterIp 10.96.0.50 is outside the cluster's Service range (10.43.0.0/16; kubectl get servicecidr" in message
    assert run_stack({**BASE, "serviceCidr": "10.43.0.0/16", "clusterIp": "10.43.0.50"}, cluster=cluster).error is None
    older = FakeCluster(ranges=None)
    assert run_stack({**BASE, "clusterIp": "10.96.0.50"}, cluster=older).error is None, "no ServiceCIDR API: not checked"


def test_a_cluster_ip_or_node_port_taken_by_another_service_is_refused_naming_it():
    dns = ServiceView("kube-system", "kube-dns", ("10.96.0.10",), ())
    web = ServiceView("shop", "web", ("10.96.7.1",), (30500, 30501))
    message = refused(run_stack({**BASE, "clusterIp": "10.96.0.10"}, cluster=FakeCluster(service_list=[dns, web])))
    assert "registry:clusterIp 10.96.0.10 is taken by the Service kube-system/kube-dns" in message
    assert "registry:nodePort 30500 is taken by the Service shop/web" in message


def test_the_registrys_own_service_from_an_earlier_up_is_not_a_conflict_even_in_the_namespace_it_leaves():
    labels = earlier_up()
    for namespace in ("registry", "registry-old"):
        ours = ServiceView(namespace, "registry", ("10.96.0.50",), (30500,), labels)
        assert run_stack({**BASE, "clusterIp": "10.96.0.50"}, cluster=FakeCluster(service_list=[ours])).error is None
    unlabelled = ServiceView("registry-old", "registry", ("10.96.0.50",), (30500,))
    message = refused(run_stack({**BASE, "clusterIp": "10.96.0.50"}, cluster=FakeCluster(service_list=[unlabelled])))
    assert "is taken by the Service registry-old/registry" in message


KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- {name: one, cluster: {server: "https://127.0.0.1:6443"}}
- {name: two, cluster: {server: "https://127.0.0.2:6443"}}
users: [{name: u, user: {token: not-a-real-token}}]
contexts:
- {name: first, context: {cluster: one, user: u}}
- {name: second, context: {cluster: two, user: u}}
current-context: first
"""


def server_of(view: KubernetesView) -> str:
    return view._core.api_client.configuration.host


def test_the_check_reads_the_cluster_pulumi_kubernetes_deploys_to(tmp_path, monkeypatch):
    """kubernetes:kubeconfig as a path or as text, kubernetes:context, else $KUBECONFIG, as pulumi-kubernetes does."""
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    assert server_of(KubernetesView.reaching(KubeAccess(str(path)))) == "https://127.0.0.1:6443"
    assert server_of(KubernetesView.reaching(KubeAccess(str(path), "second"))) == "https://127.0.0.2:6443"
    assert server_of(KubernetesView.reaching(KubeAccess(KUBECONFIG, "second"))) == "https://127.0.0.2:6443"
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert server_of(KubernetesView.reaching(KubeAccess(context="second"))) == "https://127.0.0.2:6443"


def test_a_kubeconfig_that_does_not_load_is_a_cluster_that_cannot_be_read(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(CannotRead, match=r"no kubeconfig.*not running in a cluster"):
        KubernetesView.reaching(KubeAccess())
    with pytest.raises(CannotRead, match="kubeconfig"):
        KubernetesView.reaching(KubeAccess(KUBECONFIG, "third"))


STORAGE_NODE = {"storage": "node", "storageNode": "worker-1", "sshPrivateKey": "k",
                "nodes": [{"name": "worker-1", "host": "192.168.56.11"}]}


def test_a_storage_node_the_cluster_does_not_have_is_refused_naming_its_nodes():
    """The pod is pinned by kubernetes.io/hostname; on no node it would stay Pending and up time out."""
    cluster = FakeCluster(nodes={"cp": "cp", "wrk-1": "wrk-1"})
    message = refused(run_stack({**BASE, **STORAGE_NODE}, cluster=cluster))
    assert "registry:storageNode is 'worker-1', and no node of the cluster has the label kubernetes.io/hostname=worker-1" in message
    assert "(its nodes: cp, wrk-1)" in message
    cluster = FakeCluster(nodes={"cp": "cp", "worker-1": "worker-1"})
    assert run_stack({**BASE, **STORAGE_NODE}, cluster=cluster).error is None


def test_with_several_kubeconfig_files_the_first_current_context_and_names_win_as_in_kubectl(tmp_path, monkeypatch):
    # The Python client's own merge takes the last file's current-context; kubectl,
    # client-go and so pulumi-kubernetes take the first.
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text(KUBECONFIG)
    b.write_text(KUBECONFIG.replace("current-context: first", "current-context: second")
                 .replace("127.0.0.1:6443", "127.0.0.9:6443"))
    monkeypatch.setenv("KUBECONFIG", f"{a}:{b}")
    assert server_of(KubernetesView.reaching(KubeAccess())) == "https://127.0.0.1:6443"
    monkeypatch.setenv("KUBECONFIG", f"{b}:{a}")
    assert server_of(KubernetesView.reaching(KubeAccess())) == "https://127.0.0.2:6443", "b's current-context wins"
    assert server_of(KubernetesView.reaching(KubeAccess(context="first"))) == "https://127.0.0.9:6443", "b's cluster one wins"


def test_kubernetes_cluster_replaces_the_contexts_cluster(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    assert server_of(KubernetesView.reaching(KubeAccess(str(path), cluster="two"))) == "https://127.0.0.2:6443"
    assert server_of(KubernetesView.reaching(KubeAccess(str(path), "second", cluster="one"))) == "https://127.0.0.1:6443"


def test_a_relative_certificate_path_is_read_beside_its_own_kubeconfig(tmp_path, monkeypatch):
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "ca.crt").write_text("not read until a request is made")
    (folder / "config").write_text(KUBECONFIG.replace('{server: "https://127.0.0.1:6443"}',
                                                      '{server: "https://127.0.0.1:6443", certificate-authority: ca.crt}'))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(folder / "config"))
    from registry.cluster.kubernetes import merged_kubeconfig
    merged = merged_kubeconfig(KubeAccess(), {"KUBECONFIG": str(folder / "config")})
    assert merged["clusters"][0]["cluster"]["certificate-authority"] == str(folder / "ca.crt")


THIS_STACK = "organization.registry.test"  # run_stack's organization, project and stack


def earlier_up(hostname: str = "image-registry", stack: str = THIS_STACK) -> dict[str, str]:
    """The labels an earlier up put on the registry's namespace and Service."""
    return {"app.kubernetes.io/name": "registry", "app.kubernetes.io/instance": hostname,
            "app.kubernetes.io/managed-by": "pulumi", "registry.pulumi.com/stack": stack}


def test_a_hostname_change_on_a_later_up_is_not_refused_as_someone_elses_namespace_address_or_port():
    # The README lists hostname as a change up makes; the labels hold the old one.
    mine = earlier_up()
    cluster = FakeCluster(missing=set(), labels={"registry": mine},
                          service_list=[ServiceView("registry", "registry", ("10.96.0.50",), (30500,), mine)])
    run = run_stack({**BASE, "hostname": "images", "clusterIp": "10.96.0.50"}, cluster=cluster)
    assert run.error is None, run.error


def test_a_second_stack_with_the_same_hostname_and_node_port_is_refused_before_anything_is_created():
    theirs = earlier_up(stack="organization.registry.other")
    cluster = FakeCluster(labels={"registry": theirs},
                          service_list=[ServiceView("registry", "registry", ("10.96.0.50",), (30500,), theirs)])
    message = refused(run_stack({**BASE, "namespace": "registry-two"}, cluster=cluster))
    assert "registry:nodePort 30500 is taken by the Service registry/registry" in message
    message = refused(run_stack(BASE, cluster=FakeCluster(missing=set(), labels={"registry": theirs})))
    assert "registry:namespace is 'registry', a namespace that already exists and that this program did not create" in message


def test_objects_of_a_release_before_the_stack_label_count_as_this_stacks():
    legacy = {k: v for k, v in earlier_up(hostname="old-name").items() if k != "registry.pulumi.com/stack"}
    cluster = FakeCluster(missing=set(), labels={"registry": legacy},
                          service_list=[ServiceView("registry", "registry", ("10.96.0.50",), (30500,), legacy)])
    assert run_stack({**BASE, "clusterIp": "10.96.0.50"}, cluster=cluster).error is None


def test_the_registrys_namespace_and_service_carry_the_stack_that_made_them():
    run = run_stack(BASE)
    assert run.one("kubernetes:core/v1:Namespace").inputs["metadata"]["labels"]["registry.pulumi.com/stack"] == THIS_STACK
    service = run.one("kubernetes:core/v1:Service").inputs
    assert service["metadata"]["labels"]["registry.pulumi.com/stack"] == THIS_STACK
    assert "registry.pulumi.com/stack" not in service["spec"]["selector"], "selectors cannot change"


def test_a_storage_class_gone_after_its_claim_was_bound_does_not_block_later_ups():
    # Every later up (the certificate's renewal among them) would be refused.
    cluster = FakeCluster(missing=set(), labels={"registry": earlier_up()}, classes={"standard": True},
                          objects={("PersistentVolumeClaim", "registry", "registry-data"): {}})
    assert run_stack({**BASE, "storageClass": "fast-ssd"}, cluster=cluster).error is None


def serving_generation(generation: int) -> FakeCluster:
    return FakeCluster(missing=set(), labels={"registry": earlier_up()}, objects={
        ("Secret", "registry", "registry-tls"): {"registry.pulumi.com/ca-generation": str(generation)}})


@pytest.mark.parametrize("generation", [2, 3])
def test_ca_generation_stays_or_rises_by_one(generation):
    assert run_stack({**BASE, "caGeneration": generation}, cluster=serving_generation(2)).error is None


def test_a_ca_generation_that_skips_one_is_refused_naming_the_next():
    message = refused(run_stack({**BASE, "caGeneration": 4}, cluster=serving_generation(2)))
    assert "registry:caGeneration is 4, and the registry serves with CA generation 2: raise it by one at a time (3 first" in message


def test_a_ca_generation_that_goes_down_is_refused():
    message = refused(run_stack({**BASE, "caGeneration": 1}, cluster=serving_generation(3)))
    assert "registry:caGeneration is 1, below the generation in use (3); generations only go up" in message


def test_the_tls_secret_carries_the_ca_generation_the_pods_serve_with():
    run = run_stack({**BASE, "caGeneration": 2}, cluster=serving_generation(1))
    secret = run.one("kubernetes:core/v1:Secret", "registry-tls")
    assert secret.inputs["metadata"]["labels"]["registry.pulumi.com/ca-generation"] == "2"


@pytest.mark.parametrize("command", ["./bin/token", "bin/token"])
def test_a_relative_exec_plugin_path_runs_beside_its_own_kubeconfig_as_in_client_go(tmp_path, monkeypatch, command):
    # client-go (tools/clientcmd/loader.go, GetAuthInfoFileReferences) resolves an exec
    # command holding a path separator against the folder of the file that names it.
    folder = tmp_path / "cluster"
    (folder / "bin").mkdir(parents=True)
    plugin = folder / "bin" / "token"
    plugin.write_text('#!/bin/sh\necho \'{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",'
                      ' "status": {"token": "from-the-plugin"}}\'\n')
    plugin.chmod(0o755)
    exec_user = ("{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: " + json.dumps(command)
                 + ", interactiveMode: Never}}}")
    (folder / "config").write_text(KUBECONFIG.replace("{name: u, user: {token: not-a-real-token}}", exec_user))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("KUBECONFIG", os.path.relpath(folder / "config"))
    view = KubernetesView.reaching(KubeAccess())
    assert view._core.api_client.configuration.api_key["authorization"] == "Bearer from-the-plugin"


def test_an_exec_plugin_named_without_a_path_is_looked_up_on_path_as_in_client_go(tmp_path):
    from registry.cluster.kubernetes import merged_kubeconfig
    path = tmp_path / "config"
    path.write_text(KUBECONFIG.replace("{name: u, user: {token: not-a-real-token}}",
                                       "{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: aws}}}"))
    merged = merged_kubeconfig(KubeAccess(), {"KUBECONFIG": str(path)})
    assert merged["users"][0]["user"]["exec"]["command"] == "aws"


def test_with_node_trust_from_the_cluster_a_node_that_is_down_is_named_before_up_waits_for_it():
    cluster = FakeCluster(missing={"registry", "registry-node-trust"}, not_ready={"worker-3"})
    problems, warnings = cluster_problems(settings_from({**BASE, "nodeTrust": "cluster"}, key=None), cluster)
    assert problems == []
    assert warnings == [
        "node worker-3 is not Ready: its node-trust pod cannot take a change of this run (a CA rotation, say) until "
        "the node is back, and pulumi up then waits for it up to 5 minutes before it fails; every other node takes "
        "the change meanwhile. Bring the node back, or, if it is gone for good, kubectl delete node worker-3"]
    assert cluster_problems(settings_from(BASE), cluster) == ([], []), "over SSH, only the listed nodes count"


def test_an_up_while_the_daemon_set_of_an_unfinished_destroy_is_still_going_is_refused_saying_what_to_do():
    cluster = FakeCluster(missing={"registry"}, not_ready={"worker-3"}, deleting={("registry-node-trust", "registry-node-trust")},
                          labels={"registry-node-trust": earlier_up()})
    message = refused(run_stack({**BASE, "nodeTrust": "cluster"}, cluster=cluster))
    assert ("registry:nodeTrust is cluster, and its DaemonSet registry-node-trust/registry-node-trust is still being "
            "deleted by a pulumi destroy that did not finish (held by the node(s) that are not ready: worker-3)") in message
    assert "kubectl delete node <name>" in message and "pulumi up to make it anew" in message


@pytest.mark.parametrize("volumes, size, refused_", [([], "10Gi", True), (["5Gi"], "10Gi", True), (["10Gi"], "10Gi", False),
                                                    (["20G"], "10Gi", False), (["1Gi"], "1Gi", False)])
def test_a_class_without_a_provisioner_needs_a_volume_made_by_hand_that_the_claim_can_bind(volumes, size, refused_):
    cluster = FakeCluster(classes={"manual": True}, unprovisioned={"manual"}, volumes={"manual": volumes})
    problems, _ = cluster_problems(settings_from({**BASE, "storageSize": size}), cluster)
    assert bool(problems) == refused_, problems
    if refused_:
        assert problems[0].startswith("registry:storage is pvc, and the StorageClass 'manual' has no provisioner "
                                      f"(kubernetes.io/no-provisioner) and no Available PersistentVolume of {size} or more")
