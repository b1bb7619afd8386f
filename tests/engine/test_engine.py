"""The README's commands, run by the real Pulumi CLI and pulumi-kubernetes against a real API server.

One stack goes through a user's life in order: preview, up, stack output, a
push and a pull through the registry as the cluster holds it, a second run
that changes nothing, updates, a refused config, export, destroy. The tests
share that stack and run in file order.

What runs for real: the `pulumi` CLI and engine, pulumi-kubernetes' provider,
kube-apiserver with etcd, kube-controller-manager, kube-scheduler and kwok
(tests/support/engine/cluster.py), all built by tests/engine/toolchain.sh. What does
not, because the Go module proxy serves neither (toolchain.sh records its
answer, printed below): pulumi-tls, pulumi-random and pulumi-command, and the
Python language host. So the engine runs tests/support/engine/program.py, the program
without the resources of those three providers; the certificates and
passwords they would make come from the program itself run under the mock
layer's real-crypto emulation, handed over as secret config.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.config.load import parse_settings
from registry.pull_secrets import docker_config_json
from tests.support.certs import key_pem, make_ca, make_leaf, pem
from tests.support.constants import KNOBS, MIRROR_AUTH, NAMESPACE, SERVICE_CIDR
from tests.support.engine import toolchain_dir, unavailable
from tests.support.engine.cluster import DEFAULT_CLASS, ControlPlane
from tests.support.engine.project import EngineProject, checkout
from tests.support.engine.stack import Stack, material
from tests.support.nodes import NEEDED, Node, NodeFactory, diff, require_tools, simulated_nodes
from tests.support.oci import write_image
from tests.support.polling import eventually
from tests.support.registry_server import REGISTRY_TOOL, PodSource, Registry
from tests.support.stack import ROOT, StackRun

# The Service range the API server allocates from, on loopback so that the
# simulated nodes reach the registry on the Service's address.
CLUSTER_IP = "127.0.10.50"
PULL_NAMESPACES = ["default", NAMESPACE]
IMAGE = "engine/hello:v1"
TOOLS = {**NEEDED, **REGISTRY_TOOL, "skopeo": "skopeo"}

CUSTOM_RESOURCES = {
    "registry-namespace", "registry-tls", "registry-auth", "registry-data", "registry-deployment",
    "registry-service", "registry-pull-default", f"registry-pull-{NAMESPACE}", "registry-discovery-local-registry-hosting",
}


@dataclass
class Engine:
    bin_dir: Path
    root: Path
    cluster: ControlPlane
    factory: NodeFactory
    nodes: list[Node]
    stack: Stack

    @property
    def api(self):
        return self.cluster.api

    @property
    def project(self) -> EngineProject:
        return self.stack.project

    @property
    def run(self) -> StackRun:
        return self.stack.run

    @property
    def config(self) -> dict[str, Any]:
        return self.stack.config

    def configure(self, **changes: Any) -> StackRun:
        return self.stack.configure(**changes)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    bin_dir = toolchain_dir()
    require_tools(TOOLS)
    unavailable(bin_dir)  # reported at the end of the run
    root = tmp_path_factory.mktemp("engine")
    root.chmod(0o755)
    cluster = ControlPlane(bin_dir, root / "cluster", service_cidr=SERVICE_CIDR)
    with simulated_nodes(TOOLS) as factory:
        try:
            cluster.start()
            cluster.add_volume()
            nodes = [factory.start(), factory.start()]
            project = EngineProject(bin_dir, root / "main", cluster.kubeconfig)
            project.create_stack()
            world = Engine(bin_dir, root, cluster, factory, nodes, Stack(project))
            world.configure(
                serviceCidr=SERVICE_CIDR,
                clusterIp=CLUSTER_IP,
                users=["admin"],
                pullSecretNamespaces=PULL_NAMESPACES,
                storageSize="1Gi",
                sshPrivateKey=factory.private_key,
                nodes=[{"name": f"n{n.index}", "host": n.address, "port": n.port} for n in nodes],
            )
            yield world
        finally:
            cluster.stop()


def deployment(engine: Engine) -> dict:
    return engine.api.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/registry")


def pod_template_digest(engine: Engine) -> str:
    return deployment(engine)["spec"]["template"]["metadata"]["annotations"]["registry.pulumi.com/config-digest"]


def secret_text(engine: Engine, namespace: str, name: str) -> dict[str, str]:
    data = engine.api.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")["data"]
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


# ---- preview and up --------------------------------------------------------------


def test_preview_on_a_new_stack_lists_every_resource_and_creates_nothing(engine):
    preview = engine.project.preview()
    assert preview.code == 0, preview.text
    changes = preview.changes()
    assert set(changes) >= CUSTOM_RESOURCES, preview.steps
    assert set(changes.values()) == {"create"}, changes
    assert engine.api.find(f"/api/v1/namespaces/{NAMESPACE}") is None


def test_up_creates_the_registry_and_its_pull_secrets_in_the_cluster(engine):
    up = engine.project.up()
    assert up.code == 0, up.text
    assert {name for name, change in up.changes().items() if change == "create"} >= CUSTOM_RESOURCES

    assert engine.api.find(f"/api/v1/namespaces/{NAMESPACE}") is not None
    secrets = {s["metadata"]["name"]: s["type"] for s in engine.api.items(f"/api/v1/namespaces/{NAMESPACE}/secrets")}
    assert secrets["registry-tls"] == "kubernetes.io/tls"
    assert secrets["registry-auth"] == "Opaque"
    claim = engine.api.get(f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims/registry-data")
    assert claim["status"]["phase"] == "Bound"
    status = deployment(engine)["status"]
    assert status["availableReplicas"] == 1 and status["readyReplicas"] == 1
    service = engine.api.get(f"/api/v1/namespaces/{NAMESPACE}/services/registry")
    assert service["spec"]["clusterIP"] == CLUSTER_IP
    assert service["spec"]["ports"][0]["nodePort"] == 30500
    assert service["spec"]["ports"][0]["port"] == 5000
    for namespace in PULL_NAMESPACES:
        pull = engine.api.get(f"/api/v1/namespaces/{namespace}/secrets/registry-pull-secret")
        assert pull["type"] == "kubernetes.io/dockerconfigjson"
    # Read as ctlptl and Tilt read it (KEP-1755).
    # Garbage collection, on its default schedule, beside the registry's pod.
    cron = engine.api.get(f"/apis/batch/v1/namespaces/{NAMESPACE}/cronjobs/registry-gc")
    assert cron["spec"]["schedule"] == "0 3 * * 0" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    gc_pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert gc_pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == "kubernetes.io/hostname"
    hosting = engine.api.get("/api/v1/namespaces/kube-public/configmaps/local-registry-hosting")
    document = yaml.safe_load(hosting["data"]["localRegistryHosting.v1"])
    assert document["host"] == f"{engine.nodes[0].address}:30500"
    assert document["hostFromContainerRuntime"] == "image-registry:5000"
    assert document["hostFromClusterNetwork"] == f"registry.{NAMESPACE}.svc:5000"


def test_stack_output_gives_the_outputs_contract(engine):
    plain = engine.project.outputs()
    shown = engine.project.outputs(show_secrets=True)
    endpoints = [f"{n.address}:30500" for n in engine.nodes]
    assert plain.get("password") == "[secret]" and plain.get("credentials") == "[secret]", plain
    assert shown["endpoint"] == "image-registry:5000"
    assert shown["externalEndpoints"] == endpoints and shown["externalEndpoint"] == endpoints[0]
    assert shown["clusterIp"] == CLUSTER_IP
    assert shown["username"] == "admin"
    passwords = material(engine.run)["passwords"][0]
    assert shown["password"] == passwords["admin"]
    assert shown["credentials"] == {"admin": passwords["admin"]}, "the pushers' alone"
    assert shown["pullUsername"] == "cluster-puller" and shown["pullerCredentials"] == {}
    assert plain.get("pullerCredentials") == "[secret]"
    assert shown["caCertificate"] == material(engine.run)["caCert"][0]
    assert shown["pullSecretName"] == "registry-pull-secret"
    assert shown["loginCommand"] == (
        f"pulumi stack output password --show-secrets | docker login {endpoints[0]} --username admin --password-stdin"
    )
    assert set(shown) == set(plain)
    # No secret in it, so it is a plain output a user pipes to `sudo sh`.
    assert plain["workstationSetup"].startswith("#!/bin/sh") and shown["caCertificate"].strip() in plain["workstationSetup"]


def test_a_node_pushes_and_another_pulls_by_name_through_the_registry_the_cluster_holds(engine, tmp_path):
    """The registry runs from the Deployment, Service and Secrets read back from the API server."""
    api = engine.api
    source = PodSource.from_cluster(
        deployment(engine),
        api.get(f"/api/v1/namespaces/{NAMESPACE}/services/registry"),
        api.items(f"/api/v1/namespaces/{NAMESPACE}/secrets"),
        api.items(f"/api/v1/namespaces/{NAMESPACE}/configmaps"),
    )
    registry = Registry(source, tmp_path / "registry")
    pusher, puller = engine.nodes
    outputs = engine.project.outputs(show_secrets=True)
    # pulumi-command cannot be built here (see the module docstring): the node
    # commands the program makes for this config are sent over SSH by the test.
    commands = {c.inputs["connection"]["host"]: c.inputs for c in engine.run.of_type("command:remote:Command")}
    before = {node.address: node.snapshot() for node in engine.nodes}
    try:
        registry.start()
        for node in engine.nodes:
            assert outputs["clusterIp"] in commands[node.address]["create"]
            result = node.run_command(commands[node.address], "create")
            assert result.returncode == 0, result.stderr
        # The login outputs push; the pull secret, as the cluster holds it, pulls (and may do no more).
        login = tmp_path / "login.json"
        login.write_text(docker_config_json([outputs["endpoint"]], outputs["username"], outputs["password"]))
        login.chmod(0o600)
        authfile = tmp_path / "auth.json"
        authfile.write_text(secret_text(engine, "default", "registry-pull-secret")[".dockerconfigjson"])
        authfile.chmod(0o600)
        layout = tmp_path / "layout"
        write_image(layout, "v1", layers=2, seed=b"engine")
        target = f"docker://{outputs['endpoint']}/{IMAGE}"
        push = pusher.inside("skopeo", "copy", "--dest-authfile", str(login), f"oci:{layout}:v1", target,
                             check=False, timeout=120)
        assert push.returncode == 0, push.stderr
        refused = pusher.inside("skopeo", "copy", "--dest-authfile", str(authfile), f"oci:{layout}:v1", target + "-2",
                                check=False, timeout=120)
        assert refused.returncode != 0 and "unauthorized" in refused.stderr, refused.stderr
        pulled = tmp_path / "pulled"
        pull = puller.inside("skopeo", "copy", "--src-authfile", str(authfile), target, f"dir:{pulled}", check=False,
                             timeout=120)
        assert pull.returncode == 0, pull.stderr
        wrong = puller.inside("skopeo", "inspect", "--creds", "admin:wrong", target, check=False, timeout=120)
        assert wrong.returncode != 0
        assert "unauthorized" in wrong.stderr.lower(), wrong.stderr
    finally:
        registry.stop()
        deleted = [node.run_command(commands[node.address], "delete") for node in engine.nodes]
    for node, result in zip(engine.nodes, deleted, strict=True):
        assert result.returncode == 0, result.stderr
        assert diff(before[node.address], node.snapshot()) == [], "delete restores the node byte for byte"


def test_preview_and_refresh_right_after_up_change_nothing(engine):
    preview = engine.project.preview(expect_no_changes=True)
    assert preview.code == 0, preview.text
    refresh = engine.project.refresh(expect_no_changes=True)
    assert refresh.code == 0, refresh.text


# ---- updates -----------------------------------------------------------------------


def test_adding_a_user_changes_the_auth_secret_and_rolls_the_pods_and_nothing_else(engine):
    before = pod_template_digest(engine)
    first_line = secret_text(engine, NAMESPACE, "registry-auth")["htpasswd"].splitlines()[0]
    engine.configure(users=["admin", "ci"])
    up = engine.project.up()
    assert up.code == 0, up.text
    # In place (Pulumi.yaml sets kubernetes:enableSecretMutable): the Secret is never missing.
    assert up.changes() == {"registry-auth": "update", "registry-deployment": "update"}, up.steps
    lines = secret_text(engine, NAMESPACE, "registry-auth")["htpasswd"].splitlines()
    assert lines[0] == first_line and lines[1].startswith("ci:$2b$")
    assert pod_template_digest(engine) != before


def test_changing_cert_validity_replaces_only_the_server_certificate_and_rolls_the_pods(engine):
    before = secret_text(engine, NAMESPACE, "registry-tls")
    engine.configure(certValidityDays=90)
    up = engine.project.up()
    assert up.code == 0, up.text
    assert up.changes() == {"registry-tls": "update", "registry-deployment": "update"}, up.steps
    after = secret_text(engine, NAMESPACE, "registry-tls")
    assert after["ca.crt"] == before["ca.crt"] and after["tls.key"] == before["tls.key"]
    assert after["tls.crt"] != before["tls.crt"]


def test_adding_a_node_updates_the_pull_secrets_with_its_endpoint(engine):
    third = engine.factory.start()
    engine.nodes.append(third)
    nodes = [*engine.config["nodes"], {"name": f"n{third.index}", "host": third.address, "port": third.port}]
    engine.configure(nodes=nodes)
    up = engine.project.up()
    assert up.code == 0, up.text
    # The new node's address is a SAN of the server certificate, so the certificate changes too.
    assert up.changes() == {
        "registry-pull-default": "update", f"registry-pull-{NAMESPACE}": "update",
        "registry-tls": "update", "registry-deployment": "update",
    }, up.steps
    config = json.loads(secret_text(engine, "default", "registry-pull-secret")[".dockerconfigjson"])
    assert f"{third.address}:30500" in config["auths"]


def test_moving_the_cluster_ip_replaces_the_service_in_place_of_the_old_one(engine):
    """clusterIP is immutable: the Service is replaced, the old one deleted first to free its name."""
    engine.configure(clusterIp="127.0.10.51")
    up = engine.project.up()
    assert up.code == 0, up.text
    # The address is also a SAN of the server certificate.
    assert up.changes() == {
        "registry-service": "replace", "registry-tls": "update", "registry-deployment": "update",
    }, up.steps
    assert engine.api.get(f"/api/v1/namespaces/{NAMESPACE}/services/registry")["spec"]["clusterIP"] == "127.0.10.51"
    assert engine.project.outputs()["clusterIp"] == "127.0.10.51"


def test_a_bad_config_value_stops_preview_with_the_readme_message_and_changes_nothing(engine):
    engine.project.set("registry:nodePort", "80")
    try:
        preview = engine.project.preview()
        assert preview.code != 0
        assert "registry:nodePort 80 must be between 30000 and 32767" in preview.text
        assert "Traceback" not in preview.text
        assert not preview.changes()
    finally:
        engine.project.set("registry:nodePort", "30500")
    assert engine.project.preview(expect_no_changes=True).code == 0


def test_a_ca_generation_that_skips_one_is_refused_against_the_secret_the_cluster_holds(engine):
    # The TLS Secret up wrote says which generation the pods serve with.
    engine.project.set("registry:caGeneration", "3")
    try:
        preview = engine.project.preview()
        assert preview.code != 0
        assert "registry:caGeneration is 3, and the registry serves with CA generation 1" in preview.text, preview.text
        assert not preview.changes()
    finally:
        engine.project.set("registry:caGeneration", "1")
    assert engine.project.preview(expect_no_changes=True).code == 0


def test_stack_export_holds_no_secret_in_plain_text(engine):
    exported = engine.project.export()
    stack_file = (engine.project.dir / f"Pulumi.{engine.project.stack}.yaml").read_text()
    found = material(engine.run)
    secrets = [
        *found["passwords"][0].values(),
        found["httpSecret"][0],
        found["serverKey"][0].strip().splitlines()[1],
        engine.factory.private_key.strip().splitlines()[1],
        *[line.split(":", 1)[1] for line in secret_text(engine, NAMESPACE, "registry-auth")["htpasswd"].splitlines()],
    ]
    for secret in secrets:
        assert secret not in exported
        assert secret not in stack_file
    # The pull secret's document, password inside, is only ever stored encrypted.
    assert "dockerconfigjson" in exported and '"auths"' not in exported


# ---- destroy ----------------------------------------------------------------------


def test_destroy_leaves_none_of_our_objects_in_the_cluster(engine):
    destroy = engine.project.destroy()
    assert destroy.code == 0, destroy.text
    assert engine.api.find(f"/api/v1/namespaces/{NAMESPACE}") is None
    assert engine.api.find("/api/v1/namespaces/default/secrets/registry-pull-secret") is None
    assert engine.api.find("/api/v1/namespaces/kube-public/configmaps/local-registry-hosting") is None
    volumes = engine.api.items("/api/v1/persistentvolumes")
    assert all(v["status"]["phase"] != "Bound" for v in volumes)
    assert json.loads(engine.project.cli("stack", "export").stdout)["deployment"].get("resources") in (None, [])


# ---- a second stack ----------------------------------------------------------------


def test_a_stack_without_a_cluster_ip_gets_one_allocated_by_the_api_server(engine):
    """Without `clusterIp` the address is unknown until the Service exists; outputs carry the allocated one."""
    engine.cluster.add_volume()
    project = EngineProject(engine.bin_dir, engine.root / "allocated", engine.cluster.kubeconfig, stack="allocated")
    project.create_stack()
    stack = Stack(project)
    stack.configure(
        serviceCidr=SERVICE_CIDR, namespace="registry-two", nodePort=30501,
        pullSecretNamespaces=["registry-two"], storageSize="1Gi", users=["admin"], discovery=False,
        # The knobs the API server must take as given (a nodeSelector would leave kwok's nodes unmatched).
        resources=KNOBS["resources"], tolerations=KNOBS["tolerations"], affinity=KNOBS["affinity"],
        imagePullSecret=MIRROR_AUTH,
    )
    preview = project.preview()
    assert preview.code == 0, preview.text
    up = project.up()
    try:
        assert up.code == 0, up.text
        allocated = project.outputs()["clusterIp"]
        service = engine.api.get("/api/v1/namespaces/registry-two/services/registry")
        assert service["spec"]["clusterIP"] == allocated
        assert ipaddress.ip_address(allocated) in ipaddress.ip_network(SERVICE_CIDR)
        pod = engine.api.get("/apis/apps/v1/namespaces/registry-two/deployments/registry")["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"] == KNOBS["resources"]
        assert (pod["tolerations"], pod["affinity"]) == (KNOBS["tolerations"], KNOBS["affinity"])
        assert pod["imagePullSecrets"] == [{"name": "registry-image-pull"}]
        mirror = engine.api.get("/api/v1/namespaces/registry-two/secrets/registry-image-pull")
        assert mirror["type"] == "kubernetes.io/dockerconfigjson"
        assert "bWlycm9yOnMzY3JldA" not in project.cli("stack", "export").stdout, "encrypted in the state"
        assert project.preview(expect_no_changes=True).code == 0
    finally:
        destroy = project.destroy()
    assert destroy.code == 0, destroy.text
    assert engine.api.find("/api/v1/namespaces/registry-two") is None


def resources_in_state(project: EngineProject) -> list[str]:
    deployment = json.loads(project.export())["deployment"]
    return [r["urn"] for r in deployment.get("resources") or [] if r["type"] != "pulumi:pulumi:Stack"]


def test_a_namespace_that_already_exists_is_refused_before_anything_is_created(engine):
    """The program never takes over a namespace it did not create, which destroy would
    delete: it reads the cluster first (registry/cluster/checks.py) and stops with one message.

    (Pulumi.yaml also turns server-side apply off: it creates by patching,
    which takes over an existing object without a word; this test saw it do so.)
    """
    engine.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": "taken", "labels": {"owner": "someone"}}})
    project = EngineProject(engine.bin_dir, engine.root / "taken", engine.cluster.kubeconfig, stack="taken")
    project.create_stack()
    Stack(project).configure(serviceCidr=SERVICE_CIDR, namespace="taken", nodePort=30502,
                             pullSecretNamespaces=["taken"], storageSize="1Gi", users=["admin"], discovery=False)
    up = project.up()
    assert up.code != 0 and "registry:namespace is 'taken', a namespace that already exists" in up.text, up.text
    assert "nothing was created" in up.text
    assert resources_in_state(project) == []
    assert engine.api.items("/api/v1/namespaces/taken/secrets") == []
    assert project.destroy().code == 0
    namespace = engine.api.get("/api/v1/namespaces/taken")
    assert namespace["metadata"]["labels"] == {"owner": "someone", "kubernetes.io/metadata.name": "taken"}
    assert "deletionTimestamp" not in namespace["metadata"]


def test_a_missing_pull_secret_namespace_or_a_taken_name_is_refused_before_anything_is_created_and_up_works_once_mended(engine):
    """Never half-applied: the message names the namespace and the command that makes
    it; no pull secret lands in the namespaces that do exist. The same for a pull
    secret by our name that someone else made. Mended as the messages say, the
    same stack comes up."""
    engine.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
    project = EngineProject(engine.bin_dir, engine.root / "missing", engine.cluster.kubeconfig, stack="missing")
    project.create_stack()
    Stack(project).configure(serviceCidr=SERVICE_CIDR, namespace="registry-three", nodePort=30504,
                             pullSecretNamespaces=["registry-three", "team-a", "apps"], storageSize="1Gi",
                             users=["admin"], discovery=False)
    up = project.up()
    assert up.code != 0 and "registry:pullSecretNamespaces lists 'apps', a namespace that does not exist" in up.text, up.text
    assert "kubectl create namespace apps" in up.text and "team-a" not in up.text
    assert resources_in_state(project) == []
    assert engine.api.find("/api/v1/namespaces/team-a/secrets/registry-pull-secret") is None, "nothing half-applied"
    assert engine.api.find("/api/v1/namespaces/registry-three") is None

    # A pull secret by our name that someone else made is refused the same way, and left alone.
    engine.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}})
    theirs = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "registry-pull-secret", "namespace": "apps"},
              "stringData": {"note": "someone else's"}}
    engine.api.create("/api/v1/namespaces/apps/secrets", theirs)
    up = project.up()
    assert up.code != 0 and "registry:pullSecretNamespaces lists 'apps', which already has a Secret registry-pull-secret" in up.text, up.text
    assert resources_in_state(project) == []
    assert engine.api.find("/api/v1/namespaces/team-a/secrets/registry-pull-secret") is None
    engine.api.delete("/api/v1/namespaces/apps/secrets/registry-pull-secret")

    engine.cluster.add_volume()
    up = project.up()
    try:
        assert up.code == 0, up.text
        for namespace in ("registry-three", "team-a", "apps"):
            assert engine.api.find(f"/api/v1/namespaces/{namespace}/secrets/registry-pull-secret") is not None
    finally:
        destroy = project.destroy()
    assert destroy.code == 0, destroy.text
    assert engine.api.find("/api/v1/namespaces/team-a/secrets/registry-pull-secret") is None
    assert engine.api.find("/api/v1/namespaces/team-a") is not None


def test_default_service_accounts_gain_the_pull_secret_and_one_listing_others_is_left_alone(engine):
    """A server-side-apply patch (a provider of its own). The API server treats an
    account's imagePullSecrets as one atomic list (a patch of an account that lists
    another secret fails: `conflict with "before-first-apply" using v1:
    .imagePullSecrets`, seen here before the preflight existed). So an account that
    lists none gets ours and gives it back on destroy; one that already lists a
    secret is refused before anything is created, and keeps its list."""
    accounts = {}
    for namespace in ("team-b", "team-c"):
        engine.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        accounts[namespace] = f"/api/v1/namespaces/{namespace}/serviceaccounts/default"
        # made by kube-controller-manager
        eventually(lambda namespace=namespace: engine.api.find(accounts[namespace]), f"{namespace}'s default account", 30)
    theirs = engine.api.get(accounts["team-c"])
    theirs["imagePullSecrets"] = [{"name": "team-c-mirror"}]
    engine.api.request("PUT", accounts["team-c"], theirs)

    def stack(name: str, namespace: str, node_port: int) -> EngineProject:
        project = EngineProject(engine.bin_dir, engine.root / name, engine.cluster.kubeconfig, stack=name)
        project.create_stack()
        Stack(project).configure(serviceCidr=SERVICE_CIDR, namespace=f"registry-{name}", nodePort=node_port,
                                 pullSecretNamespaces=[namespace], storageSize="1Gi", users=["admin"],
                                 discovery=False, serviceAccountPullSecret=True)
        return project

    engine.cluster.add_volume()
    fresh = stack("accounts", "team-b", 30505)
    up = fresh.up()
    try:
        assert up.code == 0, up.text
        assert engine.api.get(accounts["team-b"])["imagePullSecrets"] == [{"name": "registry-pull-secret"}]
        assert fresh.preview(expect_no_changes=True).code == 0
    finally:
        destroy = fresh.destroy()
    assert destroy.code == 0, destroy.text
    assert not engine.api.get(accounts["team-b"]).get("imagePullSecrets"), "ours is taken back"

    listing = stack("listing", "team-c", 30506)
    up = listing.up()
    assert up.code != 0 and "the default ServiceAccount of 'team-c' already lists pull secrets (team-c-mirror)" in up.text, up.text
    assert resources_in_state(listing) == []
    assert engine.api.find("/api/v1/namespaces/team-c/secrets/registry-pull-secret") is None, "nothing half-applied"
    assert engine.api.find("/api/v1/namespaces/registry-listing") is None
    assert listing.destroy().code == 0
    assert engine.api.get(accounts["team-c"])["imagePullSecrets"] == [{"name": "team-c-mirror"}]


def test_storage_node_pins_the_pod_to_the_named_node_with_its_folder_and_no_claim(engine):
    """For clusters without a provisioner: the real scheduler puts the pod where the folder is."""
    project = EngineProject(engine.bin_dir, engine.root / "folder", engine.cluster.kubeconfig, stack="folder")
    project.create_stack()
    first, second = engine.cluster.node_names
    Stack(project).configure(
        serviceCidr=SERVICE_CIDR, namespace="registry-folder", nodePort=30507, pullSecretNamespaces=["registry-folder"],
        users=["admin"], discovery=False, storage="node", storageNode=second, sshPrivateKey=engine.factory.private_key,
        nodes=[{"name": first, "host": "127.0.20.201"}, {"name": second, "host": "127.0.20.202"}],
    )
    up = project.up()
    try:
        assert up.code == 0, up.text
        (pod,) = engine.api.items("/api/v1/namespaces/registry-folder/pods")
        assert pod["spec"]["nodeName"] == second and pod["status"]["phase"] == "Running"
        assert {"name": "data", "hostPath": {"path": "/var/lib/registry-data", "type": "Directory"}} in pod["spec"]["volumes"]
        assert engine.api.items("/api/v1/namespaces/registry-folder/persistentvolumeclaims") == []
        assert project.preview(expect_no_changes=True).code == 0
    finally:
        destroy = project.destroy()
    assert destroy.code == 0, destroy.text


def test_storage_s3_with_two_replicas_runs_two_pods_on_two_nodes_with_a_budget_and_no_claim(engine):
    """The real scheduler honours the spread, and the Deployment's await waits for both pods."""
    project = EngineProject(engine.bin_dir, engine.root / "s3", engine.cluster.kubeconfig, stack="s3")
    project.create_stack()
    Stack(project).configure(
        serviceCidr=SERVICE_CIDR, namespace="registry-s3", nodePort=30503, pullSecretNamespaces=["registry-s3"],
        users=["admin"], storage="s3", replicas=2, discovery=False,
        s3={"bucket": "registry", "endpoint": "http://127.0.0.1:9"},
        s3AccessKeyId="registry-access-key", s3SecretAccessKey="registry-secret-key",
    )
    up = project.up()
    try:
        assert up.code == 0, up.text
        pods = engine.api.items("/api/v1/namespaces/registry-s3/pods")
        assert len(pods) == 2 and all(p["status"]["phase"] == "Running" for p in pods)
        assert {p["spec"]["nodeName"] for p in pods} == set(engine.cluster.node_names)
        budget = engine.api.get("/apis/policy/v1/namespaces/registry-s3/poddisruptionbudgets/registry")
        assert budget["spec"]["minAvailable"] == 1
        assert engine.api.items("/api/v1/namespaces/registry-s3/persistentvolumeclaims") == []
        keys = secret_text(engine, "registry-s3", "registry-s3")
        assert keys == {"access-key-id": "registry-access-key", "secret-access-key": "registry-secret-key"}
        assert "registry-secret-key" not in project.export()
    finally:
        destroy = project.destroy()
    assert destroy.code == 0, destroy.text
    assert engine.api.find("/api/v1/namespaces/registry-s3") is None


def readme_block(heading: str) -> list[str]:
    """The command lines of the first sh block after `heading` in the README, comments cut."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split(heading, 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def run_readme_lines(tmp_path: Path, lines: list[str]) -> tuple[Path, Path, dict]:
    """`lines` (from the second, the login, on) as written, by the real CLI in a copy of the
    project with HOME and a key of the test's own; returns the copy, the home and the
    stack's config as `pulumi config --show-secrets --json` gives it."""
    bin_dir = toolchain_dir()
    project = tmp_path / "registry"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(".git", ".venv", "venv", "__pycache__", "Pulumi.*.yaml"))
    shutil.copy(ROOT / "Pulumi.example.yaml", project)  # the one committed stack file, not the developer's own
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh" / "id_ed25519")], check=True)
    env = {"HOME": str(home), "PATH": f"{bin_dir}:{os.environ['PATH']}", "PULUMI_SKIP_UPDATE_CHECK": "1",
           "PULUMI_HOME": str(home / ".pulumi")}
    # `--local` is file://~, which the CLI resolves from the user database, not $HOME: this
    # machine's root. The test logs in to the same kind of backend in its own home instead.
    assert lines[0].startswith("pulumi login --local && ")
    steps = [lines[0].replace("pulumi login --local", f"pulumi login file://{home}", 1), *lines[1:]]
    script = "set -e\n" + "\n".join(steps) + "\npulumi config --show-secrets --json\n"
    result = subprocess.run(["bash", "-c", script], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    config = {k.split(":", 1)[1]: v["value"] for k, v in json.loads(result.stdout[result.stdout.index("{"):]).items()
              if k.startswith("registry:")}
    return project, home, config


def test_the_readmes_first_run_without_ssh_is_six_commands_and_sets_up_the_dev_stack_with_the_real_cli(tmp_path):
    """Up to `pulumi up`, as written: a stack that needs no SSH, no node list and no key, whose
    file git leaves alone. (`up` itself needs pulumi-language-python, which the module proxy does
    not serve; tests/engine/test_cluster_trust.py and test_real_node.py run this config's `up`.)"""
    lines = readme_block("## First run")
    assert len(lines) <= 9, "from a clean clone to a push in at most nine commands"
    assert lines[0].startswith("git clone ")
    assert lines[2] == "pulumi stack init dev && pulumi config set registry:nodeTrust cluster && pulumi install && pulumi up"
    assert not any("ssh" in line.lower() for line in lines)
    project, home, config = run_readme_lines(tmp_path, [lines[1], lines[2].split(" && pulumi install")[0]])
    assert config["nodeTrust"] == "cluster" and "nodes" not in config and "sshPrivateKey" not in config
    settings = parse_settings({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}.get, {})
    assert settings.node_trust == "cluster" and settings.nodes == () and settings.ssh_private_key is None
    assert list((home / ".pulumi" / "stacks").rglob("dev.json")), "the stack's state in the file backend"
    stack_file = project / "Pulumi.dev.yaml"
    assert "encryptionsalt:" in stack_file.read_text()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    ignored = subprocess.run(["git", "check-ignore", "Pulumi.dev.yaml", "Pulumi.example.yaml"], cwd=project,
                             capture_output=True, text=True)
    assert ignored.stdout.split() == ["Pulumi.dev.yaml"], "git leaves the stack's own file alone"


def test_the_readmes_ssh_run_sets_up_a_stack_with_the_real_cli_as_written(tmp_path):
    lines = readme_block("### Over SSH instead")
    assert len(lines) <= 10, "a first push in at most ten lines"
    assert lines[0].startswith("git clone ") and lines[4] == "pulumi install && pulumi up"
    project, home, config = run_readme_lines(tmp_path, lines[1:4])
    assert config["sshPrivateKey"].strip() == (home / ".ssh" / "id_ed25519").read_text().strip()
    settings = parse_settings({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}.get, {"sshPrivateKey": "key"})
    assert settings.node_trust == "ssh"
    assert [n.name for n in settings.nodes] == ["control-plane", "worker-1", "worker-2"]
    stack_file = (project / "Pulumi.ops.yaml").read_text()
    assert "encryptionsalt:" in stack_file and "secure:" in stack_file, "the key is stored encrypted"
    assert "BEGIN OPENSSH" not in stack_file and "BEGIN OPENSSH" not in "".join(
        p.read_text() for p in (home / ".pulumi" / "stacks").rglob("*.json"))


def test_a_certificate_from_the_users_tls_secret_is_served_and_a_renewal_reaches_the_registry_at_the_next_up(engine):
    """tlsSecret: a kubernetes.io/tls Secret the user keeps (cert-manager writes
    tls.crt, tls.key and ca.crt). The program reads it before creating anything,
    checks it, and copies it into the registry's own TLS Secret; a renewal shows
    in `pulumi preview` and is served after `pulumi up`; destroy leaves the
    user's Secret as it was."""
    ca = make_ca()
    source = "/api/v1/namespaces/certs/secrets/registry-tls"

    def issued(ips=()) -> dict:
        key, leaf = make_leaf(ca, ips=ips)
        text = {"tls.crt": pem(leaf), "tls.key": key_pem(key), "ca.crt": pem(ca[1])}
        return {k: base64.b64encode(v.encode()).decode() for k, v in text.items()}

    engine.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "certs"}})
    first = issued()
    engine.api.create("/api/v1/namespaces/certs/secrets", {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "registry-tls", "namespace": "certs"}, "data": first})
    project = EngineProject(engine.bin_dir, engine.root / "brought", engine.cluster.kubeconfig, stack="brought")
    project.create_stack()
    Stack(project).configure(serviceCidr=SERVICE_CIDR, namespace="registry-brought", nodePort=30507,
                             pullSecretNamespaces=["registry-brought"], storageSize="1Gi", users=["admin"],
                             discovery=False)
    project.set("registry:tlsSecret", "certs/registry-tls")
    engine.cluster.add_volume()
    copy = "/api/v1/namespaces/registry-brought/secrets/registry-tls"
    up = project.up()
    try:
        assert up.code == 0, up.text
        assert engine.api.get(copy)["data"] == first
        assert project.outputs()["caCertificate"] == base64.b64decode(first["ca.crt"]).decode()
        assert first["tls.key"] not in project.export()
        assert base64.b64decode(first["tls.key"]).decode().splitlines()[1] not in project.export(), "encrypted in the state"
        assert project.preview(expect_no_changes=True).code == 0

        renewed = issued(ips=("127.0.10.9",))
        theirs = engine.api.get(source)
        theirs["data"] = renewed
        engine.api.request("PUT", source, theirs)
        preview = project.preview()
        assert preview.code == 0 and preview.changes().get("registry-tls") == "update", preview.changes()
        up = project.up()
        assert up.code == 0, up.text
        assert engine.api.get(copy)["data"] == renewed
    finally:
        destroy = project.destroy()
    assert destroy.code == 0, destroy.text
    assert engine.api.get(source)["data"] == renewed, "the user's Secret is left as it was"


def test_a_cluster_without_a_default_storage_class_is_told_to_use_storage_node_before_anything_is_created(engine):
    """A bare kubeadm cluster has no storage provisioner: the claim would wait
    and `pulumi up` time out. The program says so first, with the way out."""
    path = "/apis/storage.k8s.io/v1/storageclasses/manual"
    manual = engine.api.get(path)
    manual["metadata"]["annotations"][DEFAULT_CLASS] = "false"
    engine.api.request("PUT", path, manual)
    try:
        project = EngineProject(engine.bin_dir, engine.root / "bare", engine.cluster.kubeconfig, stack="bare")
        project.create_stack()
        Stack(project).configure(serviceCidr=SERVICE_CIDR, namespace="registry-bare", nodePort=30508,
                                 pullSecretNamespaces=["registry-bare"], users=["admin"], discovery=False)
        preview = project.preview()
        assert preview.code != 0, preview.text
        assert "registry:storage is pvc with no storageClass, and the cluster has no default StorageClass" in preview.text
        assert "set registry:storage to node" in preview.text
        up = project.up()
        assert up.code != 0 and resources_in_state(project) == []
        assert engine.api.find("/api/v1/namespaces/registry-bare") is None
    finally:
        manual = engine.api.get(path)
        manual["metadata"]["annotations"][DEFAULT_CLASS] = "true"
        engine.api.request("PUT", path, manual)


def test_a_cluster_ip_outside_the_range_or_taken_and_a_taken_node_port_are_refused_before_anything_is_created(engine):
    """The API server would refuse the Service only after the namespace and the pull
    secrets exist, without naming who holds the address. The program reads the
    cluster's ServiceCIDRs and Services first."""
    engine.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    engine.api.create("/api/v1/namespaces/shop/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"type": "NodePort", "clusterIP": "127.0.10.77", "selector": {"app": "web"},
                 "ports": [{"port": 80, "nodePort": 30509}]}})
    project = EngineProject(engine.bin_dir, engine.root / "addresses", engine.cluster.kubeconfig, stack="addresses")
    project.create_stack()
    stack = Stack(project)
    stack.configure(serviceCidr=SERVICE_CIDR, clusterIp="127.0.10.77", namespace="registry-addresses", nodePort=30509,
                    pullSecretNamespaces=["shop"], storageSize="1Gi", users=["admin"], discovery=False)
    up = project.up()
    assert up.code != 0, up.text
    assert "registry:clusterIp 127.0.10.77 is taken by the Service shop/web" in up.text, up.text
    assert "registry:nodePort 30509 is taken by the Service shop/web" in up.text, up.text
    assert resources_in_state(project) == []
    assert engine.api.find("/api/v1/namespaces/shop/secrets/registry-pull-secret") is None

    stack.configure(serviceCidr="10.96.0.0/12", clusterIp="10.96.0.50", nodePort=30510)
    preview = project.preview()
    assert preview.code != 0
    assert f"registry:clusterIp 10.96.0.50 is outside the cluster's Service range ({SERVICE_CIDR};" in preview.text, preview.text


def test_a_storage_node_that_is_not_a_node_of_the_cluster_is_refused_before_anything_is_created(engine):
    """The pod is pinned by kubernetes.io/hostname: a name the scheduler cannot match would
    leave it Pending and `up` waiting out its timeout. The message lists the nodes."""
    project = EngineProject(engine.bin_dir, engine.root / "nowhere", engine.cluster.kubeconfig, stack="nowhere")
    project.create_stack()
    first, _ = engine.cluster.node_names
    Stack(project).configure(
        serviceCidr=SERVICE_CIDR, namespace="registry-nowhere", nodePort=30511, pullSecretNamespaces=["registry-nowhere"],
        users=["admin"], discovery=False, storage="node", storageNode="worker-9", sshPrivateKey=engine.factory.private_key,
        nodes=[{"name": first, "host": "127.0.20.201"}, {"name": "worker-9", "host": "127.0.20.209"}],
    )
    up = project.up()
    assert up.code != 0, up.text
    assert "registry:storageNode is 'worker-9', and no node of the cluster has the label kubernetes.io/hostname=worker-9" in up.text
    assert f"(its nodes: {', '.join(sorted(engine.cluster.node_names))})" in up.text
    assert resources_in_state(project) == []
    assert engine.api.find("/api/v1/namespaces/registry-nowhere") is None


def decoy_kubeconfig(path: Path) -> Path:
    """A kubeconfig of another cluster (nothing answers at its address), whose current context is its own."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "decoy", "cluster": {"server": "https://127.0.0.9:6443", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "decoy", "user": {"token": "decoy-token"}}],
        "contexts": [{"name": "decoy", "context": {"cluster": "decoy", "user": "decoy"}}],
        "current-context": "decoy",
    }))
    return path


def test_with_kubeconfig_files_a_and_b_the_check_reads_the_cluster_pulumi_kubernetes_deploys_to(engine):
    # KUBECONFIG=real:decoy: pulumi-kubernetes (client-go) takes the first file's
    # current context, the Python client the last one's. The check must read the
    # real cluster, where the listed namespace is missing, and refuse.
    project = EngineProject(engine.bin_dir, engine.root / "two-files", engine.cluster.kubeconfig, stack="two-files")
    project.env["KUBECONFIG"] = f"{engine.cluster.kubeconfig}:{decoy_kubeconfig(engine.root / 'decoy-a.json')}"
    project.create_stack()
    Stack(project).configure(serviceCidr=SERVICE_CIDR, namespace="registry-two-files", nodePort=30511,
                             pullSecretNamespaces=["not-made-yet"], storageSize="1Gi", users=["admin"], discovery=False)
    up = project.up()
    assert up.code != 0 and "'not-made-yet', a namespace that does not exist" in up.text, up.text
    assert resources_in_state(project) == []
    assert project.destroy().code == 0


def test_the_service_account_patch_goes_to_the_stacks_context_not_the_current_one(engine):
    # kubernetes:context names the real cluster; the kubeconfig's current
    # context is another. Every provider the program makes must use the former.
    real = yaml.safe_load(engine.cluster.kubeconfig.read_text())
    decoy = json.loads(decoy_kubeconfig(engine.root / "decoy-b.json").read_text())
    merged = {**real, "current-context": "decoy"}
    for section in ("clusters", "users", "contexts"):
        merged[section] = real[section] + decoy[section]
    config = engine.root / "current-elsewhere.json"
    config.write_text(json.dumps(merged))
    namespace = "team-context"
    engine.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    account = f"/api/v1/namespaces/{namespace}/serviceaccounts/default"
    eventually(lambda: engine.api.find(account), f"{namespace}'s default account", 30)
    project = EngineProject(engine.bin_dir, engine.root / "context", config, stack="context")
    project.create_stack()
    project.set("kubernetes:context", real["current-context"])
    Stack(project).configure(serviceCidr=SERVICE_CIDR, namespace="registry-context", nodePort=30512,
                             pullSecretNamespaces=[namespace], storageSize="1Gi", users=["admin"],
                             discovery=False, serviceAccountPullSecret=True)
    engine.cluster.add_volume()
    up = project.up()
    try:
        assert up.code == 0, up.text
        assert engine.api.get(account)["imagePullSecrets"] == [{"name": "registry-pull-secret"}]
    finally:
        destroy = project.destroy()
    assert destroy.code == 0, destroy.text
    assert not engine.api.get(account).get("imagePullSecrets")


def test_a_hostname_change_goes_through_and_a_second_stack_on_the_same_port_is_refused_first(engine):
    # The labels of the objects this stack made held the hostname, so a changed
    # hostname made its own namespace, address and port look like someone else's.
    engine.cluster.add_volume()
    first = EngineProject(engine.bin_dir, engine.root / "renamed", engine.cluster.kubeconfig, stack="renamed")
    first.create_stack()
    renamed = Stack(first)
    renamed.configure(serviceCidr=SERVICE_CIDR, clusterIp="127.0.10.60", namespace="registry-renamed",
                      nodePort=30513, pullSecretNamespaces=["registry-renamed"], storageSize="1Gi",
                      users=["admin"], discovery=False)
    up = first.up()
    try:
        assert up.code == 0, up.text
        second = EngineProject(engine.bin_dir, engine.root / "second", engine.cluster.kubeconfig, stack="second")
        second.create_stack()
        Stack(second).configure(serviceCidr=SERVICE_CIDR, namespace="registry-second", nodePort=30513,
                                pullSecretNamespaces=["registry-second"], storageSize="1Gi", users=["admin"],
                                discovery=False)
        refused = second.up()
        assert refused.code != 0, refused.text
        assert "registry:nodePort 30513 is taken by the Service registry-renamed/registry" in refused.text, refused.text
        assert resources_in_state(second) == []
        assert second.destroy().code == 0

        renamed.configure(hostname="images")
        preview = first.preview()
        assert preview.code == 0 and "does not fit" not in preview.text, preview.text
    finally:
        destroy = first.destroy()
    assert destroy.code == 0, destroy.text


# The last release before the restructuring of issue 18 (config table, one-phase
# components, node program in parts, tests in layers): its stacks must show no change.
RELEASE_BEFORE = "072710a"


def test_a_stack_made_by_the_release_before_keeps_every_urn_and_changes_only_its_namespace_labels(engine, tmp_path):
    """`pulumi up` with the previous release's program, then `pulumi preview` with this
    one, on the same state: no URN moved, and the one input changed is the one meant to."""
    release = checkout(RELEASE_BEFORE, tmp_path / "release")
    engine.cluster.add_volume()
    project = EngineProject(engine.bin_dir, engine.root / "upgrade", engine.cluster.kubeconfig, stack="upgrade")
    project.create_stack()
    Stack(project).configure(
        serviceCidr=SERVICE_CIDR, namespace="registry-upgrade", nodePort=30520, pullSecretNamespaces=["registry-upgrade"],
        users=["admin", "ci"], storageSize="1Gi", discovery=False, imagePullSecret=MIRROR_AUTH,
        resources=KNOBS["resources"], tolerations=KNOBS["tolerations"],
        sshPrivateKey=engine.factory.private_key,
        nodes=[{"name": "n1", "host": "127.0.20.211"}, {"name": "n2", "host": "127.0.20.212"}],
    )
    # Each release with its own project file: the release before knows none of the keys
    # this one declares (nodeTrust, nodeTrustImage), and would refuse them as unknown.
    before = project.run_release("up", release, runner="tests.engine.inline")
    try:
        assert before.code == 0, before.text
        urns = set(resources_in_state(project))
        preview = project.preview()
        # Since that release the registry's namespace enforces a Pod Security level
        # (issue 25, defect 17): its labels change in place. The proxy (issue 29) adds its
        # ConfigMap and a pull-only user: the htpasswd, the pods and the pull secret change
        # in place. Nothing is replaced or deleted.
        assert preview.code == 0 and preview.changes() == {
            "registry-namespace": "update", "registry-auth": "update", "registry-deployment": "update",
            "registry-garbage-collection": "update", "registry-pull-registry-upgrade": "update",
            "registry-proxy-config": "create",
        }, preview.text
        assert set(resources_in_state(project)) == urns
    finally:
        destroy = project.destroy()
    assert destroy.code == 0, destroy.text
