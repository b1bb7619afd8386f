"""The program under Pulumi's mocks, with real certificates and real bcrypt: the whole contract."""

import base64
import copy
import datetime
import json
import runpy
import shlex
import subprocess
import sys

import bcrypt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store

from registry.credentials import BCRYPT_COST
from registry.names import CONFIG_DIGEST_ANNOTATION, PULL_SECRET_NAME
from registry.node_script import STATE_FORMAT
from registry.node_script import program as program_text
from tests.support.constants import BASE_CONFIG, COMMAND, KNOBS, MIRROR_AUTH
from tests.support.stack import ROOT, ProviderState, run_stack

OUTPUT_NAMES = {
    "endpoint", "externalEndpoints", "externalEndpoint", "clusterIp", "username", "password", "credentials",
    "caCertificate", "pullSecretName", "loginCommand", "workstationSetup", "pullUsername", "pullerCredentials",
}
SECRET = "kubernetes:core/v1:Secret"


def passwords(run):
    return {r.name.removeprefix("registry-").removesuffix("-password"): r.outputs["result"]
            for r in run.of_type("random:index/randomPassword:RandomPassword") if r.name.endswith("-password")}


def pod_of(run):
    return deployment(run)["spec"]["template"]["spec"]


def proxy_of(run):
    (proxy,) = pod_of(run)["initContainers"]
    return proxy


def deployment(run):
    return run.one("kubernetes:apps/v1:Deployment").inputs


def container(run):
    return deployment(run)["spec"]["template"]["spec"]["containers"][0]


def env_of(run):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(run)["env"]}


def pod_digest(run):
    return deployment(run)["spec"]["template"]["metadata"]["annotations"][CONFIG_DIGEST_ANNOTATION]


def certs(run):
    ca = x509.load_pem_x509_certificate(run.outputs["caCertificate"].encode())
    tls = run.one(SECRET, "registry-tls").inputs["stringData"]
    leaf = x509.load_pem_x509_certificate(tls["tls.crt"].encode())
    return ca, leaf, tls


# ---- outputs -------------------------------------------------------------------

def test_outputs_are_exactly_the_contract(three_node_run):
    run = three_node_run
    assert set(run.outputs) == OUTPUT_NAMES
    assert run.outputs["endpoint"] == "image-registry:5000"
    assert run.outputs["externalEndpoints"] == [
        "192.168.56.10:30500", "192.168.56.11:30500", "worker-2.example.internal:30500"]
    assert run.outputs["clusterIp"] == "10.96.0.50"
    assert run.outputs["username"] == "admin"
    assert run.outputs["pullSecretName"] == PULL_SECRET_NAME
    assert run.outputs["credentials"] == {user: passwords(run)[user] for user in ("admin", "ci")}
    assert run.outputs["password"] == passwords(run)["admin"]
    assert run.outputs["pullUsername"] == "cluster-puller" and run.outputs["pullerCredentials"] == {}


def test_the_pullers_get_their_passwords_in_an_output_of_their_own_and_the_pull_secrets_user_in_none():
    run = run_stack({**BASE_CONFIG, "pullers": ["scanner", "mirror"], "pullSecretUser": "kubelet-pull"})
    assert run.error is None, run.error
    made = passwords(run)
    assert set(made) == {"admin", "ci", "scanner", "mirror", "kubelet-pull"}
    assert run.outputs["pullerCredentials"] == {"scanner": made["scanner"], "mirror": made["mirror"]}
    assert run.outputs["credentials"] == {"admin": made["admin"], "ci": made["ci"]}
    assert run.outputs["pullUsername"] == "kubelet-pull"
    assert made["kubelet-pull"] not in json.dumps(run.outputs), "no person needs the pull secrets' password"


def test_password_and_credentials_are_secret_and_nothing_else_is(three_node_run):
    assert three_node_run.secret_outputs == {"password", "credentials", "pullerCredentials"}


def test_login_command_reads_the_password_from_stdin(three_node_run):
    login = three_node_run.outputs["loginCommand"]
    assert "--password-stdin" in login and "--username admin" in login
    assert "192.168.56.10:30500" in login
    assert all(p not in login for p in passwords(three_node_run).values())


def test_the_login_command_and_the_push_endpoint_name_the_same_node_and_run_as_the_readme_says(three_node_run):
    # README: eval "$(pulumi stack output loginCommand)", then push to externalEndpoint.
    outputs = three_node_run.outputs
    assert outputs["externalEndpoint"] == outputs["externalEndpoints"][0] == "192.168.56.10:30500"
    shown = subprocess.run(["sh", "-c", "docker() { printf '%s|' \"$@\"; cat; }; pulumi() { echo the-password; }; "
                            f"eval {shlex.quote(outputs['loginCommand'])}"], capture_output=True, text=True)
    assert shown.stdout == "login|192.168.56.10:30500|--username|admin|--password-stdin|the-password\n", shown.stderr


def test_login_command_quotes_a_username_the_shell_would_read():
    run = run_stack({**BASE_CONFIG, "users": ["o'brien$x"]})
    assert run.error is None
    assert "--username 'o'\"'\"'brien$x' --password-stdin" in run.outputs["loginCommand"]


def test_allocated_cluster_ip_reaches_outputs_and_node_commands():
    config = {k: v for k, v in BASE_CONFIG.items() if k != "clusterIp"}
    run = run_stack(config, allocated_ip="10.96.7.7")
    assert run.error is None
    assert "clusterIP" not in run.one("kubernetes:core/v1:Service").inputs["spec"]
    assert run.outputs["clusterIp"] == "10.96.7.7"
    for command in run.of_type(COMMAND):
        assert "REG_IP=10.96.7.7" in command.inputs["create"]


# ---- certificates ----------------------------------------------------------------

def test_ca_is_a_ten_year_signing_only_ca(three_node_run):
    ca, _, _ = certs(three_node_run)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    days = (ca.not_valid_after_utc - ca.not_valid_before_utc).days
    assert 3640 <= days <= 3660
    ca_input = three_node_run.one("tls:index/selfSignedCert:SelfSignedCert").inputs
    assert 0 < ca_input["earlyRenewalHours"] < ca_input["validityPeriodHours"]


def test_leaf_is_p256_server_auth_for_cert_validity_days_and_renews_early(three_node_run):
    _, leaf, _ = certs(three_node_run)
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    assert ExtendedKeyUsageOID.SERVER_AUTH in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc) == datetime.timedelta(days=365)
    signed = three_node_run.one("tls:index/locallySignedCert:LocallySignedCert").inputs
    assert 0 < signed["earlyRenewalHours"] < signed["validityPeriodHours"] == 365 * 24


def test_leaf_sans_cover_every_name_and_ip_a_client_dials(three_node_run):
    _, leaf, _ = certs(three_node_run)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {
        "image-registry", "registry.registry.svc", "registry.registry.svc.cluster.local",
        "localhost", "worker-2.example.internal"}
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {
        "10.96.0.50", "192.168.56.10", "192.168.56.11", "127.0.0.1"}


def test_leaf_verifies_against_the_ca_for_every_san(three_node_run):
    ca, leaf, tls = certs(three_node_run)
    assert tls["ca.crt"] == three_node_run.outputs["caCertificate"]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    store = Store([ca])
    for name in sans.get_values_for_type(x509.DNSName):
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name)).verify(leaf, [])
    for ip in sans.get_values_for_type(x509.IPAddress):
        PolicyBuilder().store(store).build_server_verifier(x509.IPAddress(ip)).verify(leaf, [])
    with pytest.raises(Exception):  # noqa: B017 - cryptography's verification error, whichever the version names
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName("other-registry")).verify(leaf, [])


def test_rotating_the_leaf_touches_no_node():
    state = ProviderState()
    first = run_stack(BASE_CONFIG, state)
    second = run_stack({**BASE_CONFIG, "certValidityDays": "90"}, state)
    assert certs(first)[1].serial_number != certs(second)[1].serial_number

    def by_name(run):
        return {c.name: c.inputs for c in run.of_type(COMMAND)}

    assert by_name(first) == by_name(second)


# ---- credentials ------------------------------------------------------------------

def test_passwords_are_long_and_shell_and_url_safe(three_node_run):
    for resource in three_node_run.of_type("random:index/randomPassword:RandomPassword"):
        assert resource.inputs["length"] >= 32 and resource.inputs["special"] is False
    for password in passwords(three_node_run).values():
        assert len(password) >= 32 and password.isalnum()


def test_htpasswd_verifies_every_user_with_bcrypt_and_the_pushers_file_the_pushers_alone(three_node_run):
    auth = three_node_run.one(SECRET, "registry-auth").inputs["stringData"]
    lines = dict(line.split(":", 1) for line in auth["htpasswd"].splitlines())
    assert list(lines) == ["admin", "ci", "cluster-puller"]
    assert auth["pushers"].splitlines() == auth["htpasswd"].splitlines()[:2], "writes are checked against these"
    for user, password in passwords(three_node_run).items():
        assert bcrypt.checkpw(password.encode(), lines[user].encode())
        assert lines[user].startswith(f"$2b${BCRYPT_COST:02d}$")
        assert not bcrypt.checkpw(b"wrong" + password.encode(), lines[user].encode())


def test_htpasswd_changes_only_for_the_rotated_password():
    state = ProviderState()
    first = run_stack(BASE_CONFIG, state)
    again = run_stack(BASE_CONFIG, state)

    def ht(run):
        return run.one(SECRET, "registry-auth").inputs["stringData"]["htpasswd"].splitlines()

    assert ht(first) == ht(again)
    # Forget ci's password, as `pulumi up --replace` on it would.
    del state.by_urn[next(u for u in state.by_urn if u.endswith("registry-ci-password"))]
    rotated = run_stack(BASE_CONFIG, state)
    assert ht(rotated)[0] == ht(first)[0] and ht(rotated)[1] != ht(first)[1]
    digest = pod_digest
    assert digest(rotated) != digest(first), "pods must roll when htpasswd changes"


def test_http_secret_is_random_and_comes_from_a_secret(three_node_run):
    secret = three_node_run.one(SECRET, "registry-auth").inputs["stringData"]["http-secret"]
    assert len(secret) >= 32
    assert env_of(three_node_run)["REGISTRY_HTTP_SECRET"] == {"secretKeyRef": {"name": "registry-auth", "key": "http-secret"}}


# ---- workload ----------------------------------------------------------------------

def test_namespace_secrets_and_claim(three_node_run):
    run = three_node_run
    assert run.one("kubernetes:core/v1:Namespace").inputs["metadata"]["name"] == "registry"
    tls = run.one(SECRET, "registry-tls").inputs
    assert tls["type"] == "kubernetes.io/tls" and set(tls["stringData"]) == {"tls.crt", "tls.key", "ca.crt"}
    claim = run.one("kubernetes:core/v1:PersistentVolumeClaim").inputs["spec"]
    assert claim["resources"]["requests"]["storage"] == "10Gi" and claim["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in claim
    with_class = run_stack({**BASE_CONFIG, "storageClass": "fast-ssd", "storageSize": "50Gi"})
    claim = with_class.one("kubernetes:core/v1:PersistentVolumeClaim").inputs["spec"]
    assert claim["storageClassName"] == "fast-ssd" and claim["resources"]["requests"]["storage"] == "50Gi"


@pytest.mark.parametrize("storage, level", [({}, "restricted"), ({"storage": "s3", "s3": {"bucket": "images"}}, "restricted"),
                                            ({"storage": "node", "storageNode": "cp"}, "privileged")])
def test_the_registrys_namespace_enforces_the_strictest_pod_security_level_its_pods_meet(storage, level):
    run = run_stack({**BASE_CONFIG, **storage})
    assert run.error is None, run.error
    labels = run.one("kubernetes:core/v1:Namespace").inputs["metadata"]["labels"]
    assert {k: v for k, v in labels.items() if k.startswith("pod-security")} == {
        f"pod-security.kubernetes.io/{mode}": level for mode in ("enforce", "warn", "audit")}


def test_the_registry_listens_on_the_pods_loopback_alone_behind_the_proxy_and_allows_delete(three_node_run):
    env = env_of(three_node_run)
    assert env["REGISTRY_HTTP_ADDR"] == "127.0.0.1:5002"
    assert not {"REGISTRY_AUTH", "REGISTRY_HTTP_TLS_CERTIFICATE", "REGISTRY_HTTP_TLS_KEY"} & set(env)
    assert env["REGISTRY_STORAGE_DELETE_ENABLED"] == "true"
    c = container(three_node_run)
    assert c["image"] == "registry:3.1.1"
    assert {m["name"] for m in c["volumeMounts"]} == {"data", "tmp"}, "no certificate, no password file"
    assert [p["name"] for p in c["ports"]] == ["metrics"]
    through_the_proxy = {"path": "/", "port": 5000, "scheme": "HTTPS"}
    assert c["livenessProbe"]["httpGet"] == through_the_proxy
    # With garbage collection on (the default), readiness follows the read-only switch.
    assert "/var/lib/registry/.maintenance/mode" in c["readinessProbe"]["exec"]["command"][-1]
    assert ":138A " in c["readinessProbe"]["exec"]["command"][-1], "listening on the loopback port 5002"
    without_gc = container(run_stack({**BASE_CONFIG, "gcSchedule": ""}))
    assert without_gc["readinessProbe"]["httpGet"] == through_the_proxy
    assert "command" not in without_gc
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


def test_the_proxy_serves_tls_on_the_services_port_and_checks_the_htpasswd_files(three_node_run):
    proxy = proxy_of(three_node_run)
    assert proxy["name"] == "proxy" and proxy["restartPolicy"] == "Always", "a sidecar: it starts first"
    assert proxy["image"].startswith("nginx:1.30.6-alpine@sha256:")
    assert proxy["ports"] == [{"name": "registry", "containerPort": 5000, "protocol": "TCP"}]
    assert proxy["command"] == ["nginx", "-e", "stderr", "-c", "/etc/registry-proxy/nginx.conf"]
    mounts = {m["name"]: m["mountPath"] for m in proxy["volumeMounts"]}
    assert mounts == {"tls": "/certs", "auth": "/auth", "proxy-config": "/etc/registry-proxy", "proxy-tmp": "/tmp"}
    volumes = {v["name"]: v for v in pod_of(three_node_run)["volumes"]}
    assert [i["key"] for i in volumes["auth"]["secret"]["items"]] == ["htpasswd", "pushers"]
    assert volumes["proxy-config"]["configMap"]["name"] == "registry-proxy"
    config = three_node_run.one("kubernetes:core/v1:ConfigMap", "registry-proxy-config").inputs
    text = config["data"]["nginx.conf"]
    assert "listen 5000 ssl;" in text and "server 127.0.0.1:5002;" in text
    assert "ssl_certificate /certs/tls.crt;" in text and "auth_basic_user_file /auth/pushers;" in text
    assert 'auth_basic "image-registry registry";' in text, "the realm clients were asked for before"


def test_the_proxy_config_rolls_the_pods_when_it_changes():
    state = ProviderState()
    first = run_stack(BASE_CONFIG, state)
    second = run_stack({**BASE_CONFIG, "hostname": "images"}, state)
    assert pod_digest(first) != pod_digest(second)


def test_the_proxy_image_comes_from_the_mirror_as_the_registrys_does():
    mirror = "mirror.example.com/library/nginx:1.30.6-alpine"
    run = run_stack({**BASE_CONFIG, "proxyImage": mirror, "imagePullSecret": MIRROR_AUTH})
    assert run.error is None, run.error
    assert proxy_of(run)["image"] == mirror
    assert pod_of(run)["imagePullSecrets"] == [{"name": "registry-image-pull"}]


def test_deployment_is_restricted_and_recreated(three_node_run):
    spec = deployment(three_node_run)["spec"]
    pod = spec["template"]["spec"]
    assert spec["strategy"] == {"type": "Recreate"} and spec["replicas"] == 1
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in (pod["containers"][0], pod["initContainers"][0]):  # the registry, and its proxy
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]} and "runAsUser" not in sc, "the pod's non-root user"


def test_pods_roll_when_the_certificate_changes():
    state = ProviderState()
    first = run_stack(BASE_CONFIG, state)
    second = run_stack({**BASE_CONFIG, "certValidityDays": "30"}, state)
    digest = pod_digest
    assert digest(first) != digest(second)


def test_service_is_a_nodeport_with_fixed_cluster_ip_and_ports(three_node_run):
    spec = three_node_run.one("kubernetes:core/v1:Service").inputs["spec"]
    assert spec["type"] == "NodePort" and spec["clusterIP"] == "10.96.0.50"
    assert spec["ports"] == [{"name": "registry", "protocol": "TCP", "port": 5000, "targetPort": "registry", "nodePort": 30500}]


# ---- pull secrets -------------------------------------------------------------------

def test_pull_secret_in_every_namespace_with_every_endpoint(three_node_run):
    run = three_node_run
    pulls = [r for r in run.of_type(SECRET) if r.inputs["type"] == "kubernetes.io/dockerconfigjson"]
    assert sorted(r.inputs["metadata"]["namespace"] for r in pulls) == ["apps", "default"]
    password = passwords(run)["cluster-puller"]
    assert password != run.outputs["password"], "a pull-only user, not the first pusher"
    for secret in pulls:
        assert secret.inputs["metadata"]["name"] == run.outputs["pullSecretName"]
        assert secret.secret_paths == ["stringData"]
        auths = json.loads(secret.inputs["stringData"][".dockerconfigjson"])["auths"]
        # In-cluster builders (kaniko, buildkit) dial the Service's cluster DNS name.
        in_cluster = {"registry.registry.svc:5000", "registry.registry.svc.cluster.local:5000"}
        assert set(auths) == {run.outputs["endpoint"], *in_cluster, *run.outputs["externalEndpoints"]}
        for entry in auths.values():
            assert entry["username"] == "cluster-puller" and entry["password"] == password
            assert base64.b64decode(entry["auth"]).decode() == f"cluster-puller:{password}"


# ---- node trust -----------------------------------------------------------------------

def test_one_command_per_node_with_its_connection(three_node_run):
    commands = {c.name: c for c in three_node_run.of_type(COMMAND)}
    assert set(commands) == {"registry-node-cp", "registry-node-worker-1", "registry-node-worker-2"}
    conn = {name: c.inputs["connection"] for name, c in commands.items()}
    assert (conn["registry-node-cp"]["host"], conn["registry-node-cp"]["port"], conn["registry-node-cp"]["user"]) == ("192.168.56.10", 22, "root")
    assert conn["registry-node-worker-1"]["port"] == 2222
    assert conn["registry-node-worker-2"]["user"] == "ubuntu"
    for c in commands.values():
        assert c.inputs["connection"]["privateKey"] == BASE_CONFIG["sshPrivateKey"]
        assert "connection" in c.secret_paths
        assert c.inputs["addPreviousOutputInEnv"] is False
        assert c.delete_before_replace
        assert c.inputs["stdin"] == program_text(), "the node program travels on stdin"


def test_commands_install_ca_and_hosts_entry_as_root(three_node_run):
    ca = three_node_run.outputs["caCertificate"].strip()
    for c in three_node_run.of_type(COMMAND):
        create = c.inputs["create"]
        assert "REG_NAME=image-registry" in create and "REG_PORT=5000" in create and "REG_IP=10.96.0.50" in create
        assert ca.splitlines()[1] in create
        assert "REG_ACTION=create" in create and "REG_ACTION=delete" in c.inputs["delete"]
        assert f"REG_ENTRY={c.name.removeprefix('registry-node-')}" in create
        assert "REG_STACK=organization/registry/test" in create
    root = three_node_run.one(COMMAND, "registry-node-cp").inputs
    assert root["create"].startswith("/bin/sh -c ") and root["delete"].startswith("/bin/sh -c ")
    ubuntu = three_node_run.one(COMMAND, "registry-node-worker-2").inputs
    assert ubuntu["create"].startswith("sudo -n /bin/sh -c ") and ubuntu["delete"].startswith("sudo -n /bin/sh -c ")


def test_command_lines_stay_far_under_what_one_ssh_packet_carries(three_node_run):
    """The SSH spec guarantees 32 KiB of payload, and Dropbear stops there; the program goes on stdin."""
    for c in three_node_run.of_type(COMMAND):
        assert len(c.inputs["create"]) < 4096 and len(c.inputs["delete"]) < 4096


def test_what_the_undo_must_know_forces_a_replacement(three_node_run):
    """Endpoint, owner (stack, node entry) and SSH target (host, port, user) are the triggers."""
    cp = three_node_run.one(COMMAND, "registry-node-cp").inputs
    assert cp["triggers"] == [STATE_FORMAT, "image-registry:5000", "organization/registry/test", "cp", "192.168.56.10", 22, "root"]
    for change, index in (({"port": 5001}, 1), ({"hostname": "reg"}, 1)):
        run = run_stack({**BASE_CONFIG, **change})
        assert run.one(COMMAND, "registry-node-cp").inputs["triggers"][index] != cp["triggers"][index], change
    moved = copy.deepcopy(BASE_CONFIG)
    moved["nodes"][0]["host"] = "192.168.56.20"
    assert run_stack(moved).one(COMMAND, "registry-node-cp").inputs["triggers"][4] == "192.168.56.20"


def test_a_comment_only_change_of_the_node_script_replaces_nothing(monkeypatch):
    """A release that rewords the node program updates the commands in place (create runs again); no replacement."""
    import registry.node_script as node_script

    state = ProviderState()
    before = {c.name: c.inputs for c in run_stack(BASE_CONFIG, state).of_type(COMMAND)}
    monkeypatch.setattr(node_script, "LIBRARY", node_script.LIBRARY.replace("set -eu\n", "# reworded\nset -eu\n", 1))
    after = {c.name: c.inputs for c in run_stack(BASE_CONFIG, state).of_type(COMMAND)}
    for name, inputs in before.items():
        assert after[name]["stdin"] != inputs["stdin"], "the new program reaches the node"
        assert after[name]["triggers"] == inputs["triggers"], f"{name} would be replaced"


def test_commands_wait_for_the_service(three_node_run):
    service = three_node_run.one("kubernetes:core/v1:Service").urn
    for c in three_node_run.of_type(COMMAND):
        assert service in c.dependencies


def test_no_password_in_any_command_or_plain_input_or_output(three_node_run):
    run = three_node_run
    secrets = list(passwords(run).values())
    secrets.append(run.one("random:index/randomPassword:RandomPassword", "registry-http-secret").outputs["result"])
    secrets.append(BASE_CONFIG["sshPrivateKey"])

    def plain_text(resource):
        inputs = copy.deepcopy(resource.inputs)
        for path in resource.secret_paths:
            inputs.pop(path.split(".")[0].split("[")[0], None)
        return json.dumps(inputs)

    for resource in run.resources:
        text = plain_text(resource)
        for secret in secrets:
            assert secret not in text, f"{resource.urn} carries a secret outside its secret inputs"
    for c in run.of_type(COMMAND):
        for secret in secrets:
            for text in (c.inputs["create"], c.inputs["delete"], c.inputs["stdin"], json.dumps(c.inputs["triggers"])):
                assert secret not in text
    for name, value in run.outputs.items():
        if name not in run.secret_outputs:
            assert all(secret not in json.dumps(value) for secret in secrets), name


def test_components_register_no_inputs(three_node_run):
    components = [r for r in three_node_run.resources if not r.custom]
    assert {r.type for r in components} == {
        "registry:index:Certificates", "registry:index:Credentials", "registry:index:Workload",
        "registry:index:PullSecrets", "registry:index:NodeTrust", "registry:index:Discovery"}
    for component in components:
        assert component.inputs == {}, component.urn
    for resource in three_node_run.resources:
        if resource.custom:
            assert resource.parent, f"{resource.urn} must be a child of a component"


def test_what_the_engine_replaces_frees_its_fixed_name_first(three_node_run):
    """pulumi-kubernetes replaces a Service whose clusterIP changes (tests/engine/test_engine.py sees
    it) and a Secret whose type or name changes. Their names are fixed, so the old object must
    be deleted before its replacement is created, or the create fails on the taken name."""
    replaced = [*three_node_run.of_type(SECRET), three_node_run.one("kubernetes:core/v1:Service")]
    for resource in replaced:
        assert resource.inputs["metadata"]["name"], resource.urn
        assert resource.delete_before_replace, resource.urn


# ---- stability ---------------------------------------------------------------------------

def test_second_run_gives_every_resource_identical_inputs():
    state = ProviderState()
    first = run_stack(BASE_CONFIG, state)
    second = run_stack(BASE_CONFIG, state)
    assert sorted(r.urn for r in first.resources) == sorted(r.urn for r in second.resources)
    before = {r.urn: r.inputs for r in first.resources}
    for resource in second.resources:
        assert resource.inputs == before[resource.urn], f"{resource.urn} would change on a second `pulumi up`"
    assert first.outputs == second.outputs


def test_adding_a_node_adds_one_command_and_changes_no_other():
    state = ProviderState()
    two = {**BASE_CONFIG, "nodes": BASE_CONFIG["nodes"][:2]}
    before = run_stack(two, state)
    after = run_stack(BASE_CONFIG, state)
    old = {c.name: c.inputs for c in before.of_type(COMMAND)}
    new = {c.name: c.inputs for c in after.of_type(COMMAND)}
    assert set(new) - set(old) == {"registry-node-worker-2"} and set(old) <= set(new)
    for name, inputs in old.items():
        assert new[name] == inputs, f"{name} would be re-run by adding another node"


def test_no_nodes_means_no_commands_and_no_ssh_key_needed():
    run = run_stack({"clusterIp": "10.96.0.50"})
    assert run.error is None and run.of_type(COMMAND) == []
    assert run.outputs["externalEndpoints"] == []
    assert "docker login image-registry:5000" in run.outputs["loginCommand"]


# ---- storage -----------------------------------------------------------------------------

def kubernetes_objects(run) -> list[dict]:
    """The run's Kubernetes objects, generated values (keys, passwords, their digest) blanked."""
    found = []
    for resource in run.resources:
        if not resource.type.startswith("kubernetes:"):
            continue
        inputs = copy.deepcopy(resource.inputs)
        if "stringData" in inputs:
            inputs["stringData"] = {key: "<generated>" for key in inputs["stringData"]}
        annotations = inputs.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {})
        if CONFIG_DIGEST_ANNOTATION in annotations:
            annotations[CONFIG_DIGEST_ANNOTATION] = "<generated>"
        found.append({"type": resource.type, "name": resource.name, "inputs": inputs})
    return found


def test_the_pvc_storage_objects_are_exactly_those_before_s3_existed():
    """tests/fixtures/golden/pvc_objects.json was written from the program before storage: s3 was added;
    with the day-two features that came later turned off, nothing else may differ."""
    run = run_stack({**BASE_CONFIG, "metrics": False, "gcSchedule": ""})
    golden = json.loads((ROOT / "tests/fixtures/golden/pvc_objects.json").read_text())
    now = json.loads(json.dumps(kubernetes_objects(run), sort_keys=True))
    by_name = {(o["type"], o["name"]): o for o in now}
    # Came later: the Service is not awaited, since its pods roll out only
    # after the node commands, which need its clusterIP (caGeneration).
    service = by_name[("kubernetes:core/v1:Service", "registry-service")]["inputs"]["metadata"]
    assert service.pop("annotations") == {"pulumi.com/skipAwait": "true"}
    # Came later: the namespace and the Service carry the stack that made them
    # (registry/cluster/checks.py tells them from another stack's by it).
    for kind, name in (("Namespace", "registry-namespace"), ("Service", "registry-service")):
        labels = by_name[(f"kubernetes:core/v1:{kind}", name)]["inputs"]["metadata"]["labels"]
        assert labels.pop("registry.pulumi.com/stack") == "organization.registry.test"
    # Came later: the namespace enforces the Pod Security level its pods meet.
    labels = by_name[("kubernetes:core/v1:Namespace", "registry-namespace")]["inputs"]["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels.pop(f"pod-security.kubernetes.io/{mode}") == "restricted"
    # Came later: the TLS Secret carries the CA generation the pods serve with.
    tls = by_name[("kubernetes:core/v1:Secret", "registry-tls")]["inputs"]["metadata"]["labels"]
    assert tls.pop("registry.pulumi.com/ca-generation") == "1"
    # Came with distribution 3 (registry:3.1.1): its image's config.yml logs at
    # debug level and serves metrics on :5001 unless told otherwise.
    pod = by_name[("kubernetes:apps/v1:Deployment", "registry-deployment")]["inputs"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container.pop("image") == "registry:3.1.1"
    container["image"] = "registry:2.8.3"
    came = [e for e in container["env"] if e["name"] in ("REGISTRY_LOG_LEVEL", "REGISTRY_HTTP_DEBUG_ADDR")]
    assert came == [{"name": "REGISTRY_LOG_LEVEL", "value": "info"}, {"name": "REGISTRY_HTTP_DEBUG_ADDR", "value": ""}]
    container["env"] = [e for e in container["env"] if e not in came]
    # Came with the proxy (registry/proxy.py): nginx in front serves TLS and checks the
    # passwords, the registry listens on the pod's loopback without either.
    assert [c["name"] for c in pod.pop("initContainers")] == ["proxy"]
    assert container["env"][0] == {"name": "REGISTRY_HTTP_ADDR", "value": "127.0.0.1:5002"}
    container["env"][0:1] = [{"name": "REGISTRY_HTTP_ADDR", "value": ":5000"}] + [
        {"name": f"REGISTRY_{name}", "value": value} for name, value in (
            ("HTTP_TLS_CERTIFICATE", "/certs/tls.crt"), ("HTTP_TLS_KEY", "/certs/tls.key"), ("AUTH", "htpasswd"),
            ("AUTH_HTPASSWD_REALM", "image-registry registry"), ("AUTH_HTPASSWD_PATH", "/auth/htpasswd"))]
    assert container.pop("ports") == []
    container["ports"] = [{"containerPort": 5000.0, "name": "registry", "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == 5000.0
        container[probe]["httpGet"]["port"] = "registry"
    container["volumeMounts"][0:0] = [{"mountPath": "/certs", "name": "tls", "readOnly": True},
                                      {"mountPath": "/auth", "name": "auth", "readOnly": True}]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes.pop("proxy-config")["configMap"]["name"] == "registry-proxy" and volumes.pop("proxy-tmp")
    assert volumes["auth"]["secret"]["items"].pop() == {"key": "pushers", "path": "pushers"}
    pod["volumes"] = list(volumes.values())
    auth = by_name[("kubernetes:core/v1:Secret", "registry-auth")]["inputs"]["stringData"]
    assert auth.pop("pushers") == "<generated>"
    assert [by_name.get((o["type"], o["name"])) for o in golden] == golden
    # Objects of their own that came later.
    assert set(by_name) - {(o["type"], o["name"]) for o in golden} == {
        ("kubernetes:core/v1:ConfigMap", "registry-discovery-local-registry-hosting"),
        ("kubernetes:core/v1:ConfigMap", "registry-proxy-config"),
    }


S3_CONFIG = {
    **BASE_CONFIG,
    "storage": "s3",
    "replicas": 2,
    "s3": {"bucket": "registry", "endpoint": "https://minio.example.internal:9000", "rootDirectory": "/images"},
    "s3AccessKeyId": "AKIAREGISTRY",
    "s3SecretAccessKey": "s3-secret-key-not-real",
}


@pytest.fixture
def s3_run():
    run = run_stack(S3_CONFIG)
    assert run.error is None, run.error
    return run


def test_s3_storage_has_no_claim_and_reads_the_bucket_settings(s3_run):
    assert s3_run.of_type("kubernetes:core/v1:PersistentVolumeClaim") == []
    env = env_of(s3_run)
    assert env["REGISTRY_STORAGE"] == "s3" and "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY" not in env
    assert (env["REGISTRY_STORAGE_S3_BUCKET"], env["REGISTRY_STORAGE_S3_REGION"]) == ("registry", "us-east-1")
    assert env["REGISTRY_STORAGE_S3_REGIONENDPOINT"] == "https://minio.example.internal:9000"
    assert (env["REGISTRY_STORAGE_S3_SECURE"], env["REGISTRY_STORAGE_S3_FORCEPATHSTYLE"]) == ("true", "true")
    assert env["REGISTRY_STORAGE_S3_ROOTDIRECTORY"] == "/images"
    assert env["REGISTRY_STORAGE_REDIRECT_DISABLE"] == "true", "blobs go through the registry, not the bucket"
    assert env["REGISTRY_HEALTH_STORAGEDRIVER_ENABLED"] == "true"
    assert env["REGISTRY_HTTP_SECRET"] == {"secretKeyRef": {"name": "registry-auth", "key": "http-secret"}}
    mounts = {m["name"] for m in container(s3_run)["volumeMounts"]}
    assert mounts == {"tmp"}


def test_s3_keys_come_from_a_secret_and_never_as_plain_values(s3_run):
    env = env_of(s3_run)
    assert env["REGISTRY_STORAGE_S3_ACCESSKEY"] == {"secretKeyRef": {"name": "registry-s3", "key": "access-key-id"}}
    assert env["REGISTRY_STORAGE_S3_SECRETKEY"] == {"secretKeyRef": {"name": "registry-s3", "key": "secret-access-key"}}
    keys = s3_run.one(SECRET, "registry-s3")
    assert keys.inputs["stringData"]["secret-access-key"] == S3_CONFIG["s3SecretAccessKey"]
    assert "stringData" in keys.secret_paths
    for resource in s3_run.resources:
        if resource.name != "registry-s3":
            assert S3_CONFIG["s3SecretAccessKey"] not in json.dumps(resource.inputs), resource.urn
    assert S3_CONFIG["s3SecretAccessKey"] not in json.dumps(s3_run.outputs)


def test_s3_replicas_roll_without_a_gap_spread_over_nodes_and_keep_one_through_drains(s3_run):
    spec = deployment(s3_run)["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    (spread,) = spec["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["labelSelector"] == {"matchLabels": spec["selector"]["matchLabels"]}
    budget = s3_run.one("kubernetes:policy/v1:PodDisruptionBudget").inputs["spec"]
    assert budget == {"minAvailable": 1, "selector": spec["selector"]}


def test_one_s3_replica_has_no_disruption_budget_that_would_block_every_drain():
    run = run_stack({**S3_CONFIG, "replicas": 1})
    assert run.of_type("kubernetes:policy/v1:PodDisruptionBudget") == []


def test_s3_without_keys_uses_the_pods_identity():
    config = {k: v for k, v in S3_CONFIG.items() if not k.startswith("s3A") and not k.startswith("s3S")}
    run = run_stack({**config, "s3": {"bucket": "registry"}})
    env = env_of(run)
    assert "REGISTRY_STORAGE_S3_ACCESSKEY" not in env
    assert "registry-s3" not in {secret.name for secret in run.of_type(SECRET)}
    assert "REGISTRY_STORAGE_S3_REGIONENDPOINT" not in env and env["REGISTRY_STORAGE_S3_FORCEPATHSTYLE"] == "false"


def test_new_s3_keys_roll_the_pods():
    state = ProviderState()
    before = run_stack(S3_CONFIG, state)
    after = run_stack({**S3_CONFIG, "s3SecretAccessKey": "rotated-secret-key"}, state)
    digest = pod_digest
    assert digest(before) != digest(after)



# ---- day two -----------------------------------------------------------------------------

def test_metrics_are_on_their_own_port_announced_to_prometheus_and_not_on_the_node_port(three_node_run):
    env = env_of(three_node_run)
    assert env["REGISTRY_HTTP_DEBUG_ADDR"] == ":5001" and env["REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED"] == "true"
    assert {"name": "metrics", "containerPort": 5001, "protocol": "TCP"} in container(three_node_run)["ports"]
    annotations = deployment(three_node_run)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "5001"
    service_ports = three_node_run.one("kubernetes:core/v1:Service").inputs["spec"]["ports"]
    assert [p["targetPort"] for p in service_ports] == ["registry"]


def test_metrics_off_leaves_no_trace():
    run = run_stack({**BASE_CONFIG, "metrics": False})
    # The registry:3 image's own config serves metrics on :5001: an empty address turns that off.
    assert {k: v for k, v in env_of(run).items() if k.startswith("REGISTRY_HTTP_DEBUG")} == {"REGISTRY_HTTP_DEBUG_ADDR": ""}
    assert container(run)["ports"] == []
    assert not any(k.startswith("prometheus.io") for k in deployment(run)["spec"]["template"]["metadata"]["annotations"])


def test_tools_find_the_registry_in_kube_public_as_kep_1755_says(three_node_run):
    """Parsed as ctlptl and Tilt do: YAML of `localRegistryHosting.v1` into host,
    hostFromContainerRuntime, hostFromClusterNetwork and help."""
    configmap = three_node_run.one("kubernetes:core/v1:ConfigMap", "registry-discovery-local-registry-hosting").inputs
    assert (configmap["metadata"]["namespace"], configmap["metadata"]["name"]) == ("kube-public", "local-registry-hosting")
    hosting = yaml.safe_load(configmap["data"]["localRegistryHosting.v1"])
    assert hosting == {
        "host": "192.168.56.10:30500",
        "hostFromContainerRuntime": "image-registry:5000",
        "hostFromClusterNetwork": "registry.registry.svc:5000",
        "help": hosting["help"],
    }
    assert "workstationSetup" in hosting["help"]


def test_a_second_registry_in_the_cluster_can_leave_discovery_to_the_first():
    run = run_stack({**BASE_CONFIG, "discovery": False})
    assert [c.name for c in run.of_type("kubernetes:core/v1:ConfigMap")] == ["registry-proxy-config"]


def test_workstation_setup_is_a_quoted_posix_script_without_a_secret(three_node_run):
    script = three_node_run.outputs["workstationSetup"]
    assert "workstationSetup" not in three_node_run.secret_outputs
    for endpoint in three_node_run.outputs["externalEndpoints"]:
        assert endpoint in script
    assert three_node_run.outputs["caCertificate"].strip().splitlines()[1] in script
    assert three_node_run.outputs["loginCommand"] in script
    for secret in passwords(three_node_run).values():
        assert secret not in script
    parse = subprocess.run(["/bin/sh", "-n"], input=script, text=True, capture_output=True)
    assert parse.returncode == 0, parse.stderr




def test_scheduling_knobs_go_to_the_pod_and_to_the_collection_beside_it():
    run = run_stack({**BASE_CONFIG, **KNOBS})
    pod = deployment(run)["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == KNOBS["resources"]
    assert (pod["nodeSelector"], pod["tolerations"], pod["affinity"]) == (
        KNOBS["nodeSelector"], KNOBS["tolerations"], KNOBS["affinity"])
    job = run.one("kubernetes:batch/v1:CronJob").inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job["nodeSelector"] == KNOBS["nodeSelector"] and job["tolerations"] == KNOBS["tolerations"]
    assert job["containers"][0]["resources"] == KNOBS["resources"]
    assert "podAffinity" in job["affinity"], "the collection's own affinity: the registry pod's node"
    plain = deployment(run_stack(BASE_CONFIG))["spec"]["template"]["spec"]
    assert not {"nodeSelector", "tolerations", "affinity", "imagePullSecrets"} & set(plain)


def test_the_registry_image_can_come_from_a_private_mirror_with_its_own_secret_credentials():
    run = run_stack({**BASE_CONFIG, "image": "mirror.internal:5000/library/registry:3.1.1", "imagePullSecret": MIRROR_AUTH})
    secret = run.one(SECRET, "registry-image-pull")
    assert secret.inputs["type"] == "kubernetes.io/dockerconfigjson"
    assert secret.inputs["stringData"][".dockerconfigjson"] == MIRROR_AUTH
    assert "stringData" in secret.secret_paths or "stringData..dockerconfigjson" in secret.secret_paths
    pod = deployment(run)["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "registry-image-pull"}]
    assert secret.urn in run.one("kubernetes:apps/v1:Deployment").dependencies
    job = run.one("kubernetes:batch/v1:CronJob").inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job["imagePullSecrets"] == [{"name": "registry-image-pull"}]
    for key, value in run.outputs.items():
        assert "bWlycm9yOnMzY3JldA" not in json.dumps(value), key


def test_node_connections_carry_the_passphrase_bastion_and_host_keys_as_secrets():
    from tests.support.constants import HOST_KEY
    nodes = [{"name": "cp", "host": "192.168.56.10", "hostKey": HOST_KEY}, {"name": "w1", "host": "192.168.56.11"}]
    run = run_stack({**BASE_CONFIG, "nodes": nodes, "sshKeyPassphrase": "open sesame",
                     "sshBastion": {"host": "jump.example.com", "port": 2200, "hostKey": HOST_KEY}})
    assert run.error is None, run.error
    for c in run.of_type(COMMAND):
        connection = c.inputs["connection"]
        assert connection["privateKeyPassword"] == "open sesame" and "connection" in c.secret_paths
        assert connection["proxy"] == {"host": "jump.example.com", "port": 2200, "user": "root", "hostKey": HOST_KEY,
                                       "privateKey": BASE_CONFIG["sshPrivateKey"], "privateKeyPassword": "open sesame",
                                       "dialErrorLimit": 5, "perDialTimeout": 30}
        assert connection.get("hostKey") == (HOST_KEY if c.name == "registry-node-cp" else None)
    for value in run.outputs.values():
        assert "open sesame" not in json.dumps(value)


def test_with_an_ssh_agent_no_key_is_needed_or_sent(monkeypatch):
    monkeypatch.setenv("SSH_AUTH_SOCK", "/run/user/1000/agent.sock")
    config = {k: v for k, v in BASE_CONFIG.items() if k != "sshPrivateKey"}
    run = run_stack({**config, "sshAgent": True})
    assert run.error is None, run.error
    for c in run.of_type(COMMAND):
        assert "privateKey" not in c.inputs["connection"], "pulumi-command uses SSH_AUTH_SOCK's agent itself"


def test_the_pull_secrets_change_only_once_the_registry_has_rolled_out_with_their_user():
    # Upgrading from a release whose pull secrets logged in as the first pusher: the pods
    # must know the puller before any pull secret names it, or pulls get 401 meanwhile.
    run = run_stack({**BASE_CONFIG, "pullSecretNamespaces": ["default", "registry", "apps"]})
    assert run.error is None, run.error
    rollout = run.one("kubernetes:apps/v1:Deployment")
    secrets = {r.inputs["metadata"]["namespace"]: r for r in run.of_type("kubernetes:core/v1:Secret")
               if r.inputs["type"] == "kubernetes.io/dockerconfigjson"}
    assert sorted(secrets) == ["apps", "default", "registry"]
    for secret in secrets.values():
        assert rollout.urn in secret.dependencies
    parents = {r.urn for r in run.of_type("registry:index:PullSecrets")}
    assert all(secret.parent in parents for secret in secrets.values())


def test_the_default_service_accounts_get_the_pull_secret_only_on_request():
    assert run_stack(BASE_CONFIG).of_type("kubernetes:core/v1:ServiceAccountPatch") == []
    run = run_stack({**BASE_CONFIG, "serviceAccountPullSecret": True})
    patches = run.of_type("kubernetes:core/v1:ServiceAccountPatch")
    assert sorted(p.inputs["metadata"]["namespace"] for p in patches) == ["apps", "default"]
    provider = run.one("pulumi:providers:kubernetes")
    assert provider.inputs["enableServerSideApply"] in ("true", True)
    for patch in patches:
        assert patch.inputs["metadata"]["name"] == "default"
        assert patch.inputs["imagePullSecrets"] == [{"name": "registry-pull-secret"}]
        secret = run.one(SECRET, f"registry-pull-{patch.inputs['metadata']['namespace']}")
        assert secret.urn in patch.dependencies


def test_the_service_account_patches_go_to_the_stacks_cluster_not_kubectls_current_one():
    kubeconfig = "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n"
    run = run_stack({**BASE_CONFIG, "serviceAccountPullSecret": True, "kubernetes:context": "real",
                     "kubernetes:cluster": "real-cluster", "kubernetes:kubeconfig": kubeconfig})
    assert run.error is None, run.error
    provider = run.one("pulumi:providers:kubernetes")
    assert (provider.inputs["context"], provider.inputs["cluster"]) == ("real", "real-cluster")
    assert provider.inputs["kubeconfig"] == kubeconfig and "kubeconfig" in provider.secret_paths


def test_on_a_python_older_than_3_11_the_program_says_so_and_what_to_do(monkeypatch):
    monkeypatch.setattr(sys, "version_info", (3, 9, 18, "final", 0))
    monkeypatch.setattr(sys, "version", "3.9.18 (main)")
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
    message = str(stopped.value)
    assert message.startswith("registry: this program needs Python 3.11 or later, and runs on 3.9.18") and "pulumi install" in message


def test_the_collections_pod_serves_through_the_same_proxy_so_pullers_still_cannot_write(three_node_run):
    job = three_node_run.one("kubernetes:batch/v1:CronJob").inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job["initContainers"] == [proxy_of(three_node_run)], "the same sidecar, ended with the Job's container"
    (collector,) = job["containers"]
    assert collector["readinessProbe"]["httpGet"] == {"path": "/", "port": 5000, "scheme": "HTTPS"}
    assert {v["name"] for v in job["volumes"]} >= {"auth", "tls", "proxy-config", "proxy-tmp"}
