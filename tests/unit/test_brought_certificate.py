"""A server certificate the user brings (an enterprise CA's), from the config or from a
Secret of theirs: checked before anything is created, then served, and trusted by nodes
through the user's CA, with no CA of the program's (tests/e2e/ serves it for real)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.certs import brought_certificate, key_pem, make_ca, make_leaf, pem
from tests.support.certs import brought_config as config
from tests.support.constants import CLUSTER_IP
from tests.support.stack import FakeCluster, run_stack


@pytest.fixture(scope="module")
def own():
    return brought_certificate(CLUSTER_IP)


def test_the_program_serves_the_users_certificate_and_nodes_trust_the_users_ca(own):
    run = run_stack(config(own, sshPrivateKey="k", nodes=[{"name": "cp", "host": "192.168.56.10"}]))
    assert run.error is None, run.error
    assert run.of_type("tls:index/selfSignedCert:SelfSignedCert") == [] and run.of_type("tls:index/locallySignedCert:LocallySignedCert") == []
    tls = run.one("kubernetes:core/v1:Secret", "registry-tls")
    assert tls.inputs["stringData"] == {"tls.crt": own["tlsCertificate"], "tls.key": own["tlsKey"], "ca.crt": own["tlsCa"]}
    assert "stringData" in tls.secret_paths
    assert run.outputs["caCertificate"] == own["tlsCa"]
    (command,) = run.of_type("command:remote:Command")
    assert own["tlsCa"].splitlines()[1] in command.inputs["create"]
    for value in run.outputs.values():
        assert own["tlsKey"].splitlines()[1] not in json.dumps(value)


@pytest.mark.parametrize("case, phrase", [
    ("another key", "is not the key of registry:tlsCertificate"),
    ("another name", "does not verify for 'image-registry'"),
    ("another CA", "does not verify for 'image-registry'"),
    ("expired", "not now"),
    ("no key", "registry:tlsKey is not set"),
    ("no CA", "registry:tlsCa is not set"),
    ("caGeneration", "registry:caGeneration is set, but the certificate is the user's, with its own CA"),
])
def test_a_certificate_nodes_would_refuse_is_refused_before_anything_is_created(own, case, phrase):
    values = config(own)
    if case == "another key":
        values["tlsKey"] = key_pem(ec.generate_private_key(ec.SECP256R1()))
    elif case == "another name":
        key, leaf = make_leaf(own["ca"], names=("registry.example.com",), ips=(CLUSTER_IP,))
        values.update(tlsCertificate=pem(leaf), tlsKey=key_pem(key))
    elif case == "another CA":
        values["tlsCa"] = pem(make_ca("Someone Else")[1])
    elif case == "expired":
        key, leaf = make_leaf(own["ca"], ips=(CLUSTER_IP,), days=(-30, -1))
        values.update(tlsCertificate=pem(leaf), tlsKey=key_pem(key))
    elif case == "no key":
        del values["tlsKey"]
    elif case == "no CA":
        del values["tlsCa"]
    elif case == "caGeneration":
        values["caGeneration"] = 2
    run = run_stack(values)
    assert run.error is not None and phrase in str(run.error), run.error
    assert [r for r in run.resources if r.custom] == [], "nothing is created"
    assert own["tlsKey"].splitlines()[1] not in str(run.error)


SOURCE = ("cert-manager", "registry-tls")


def with_tls_secret(own, data=None, kind="kubernetes.io/tls") -> FakeCluster:
    """A cluster whose Secret cert-manager/registry-tls holds the user's certificate, as cert-manager writes it."""
    if data is None:
        data = {"tls.crt": own["tlsCertificate"], "tls.key": own["tlsKey"], "ca.crt": own["tlsCa"]}
    return FakeCluster(secrets={SOURCE: (kind, data)})


def secret_config(**more) -> dict:
    return {"serviceCidr": "127.0.0.0/8", "clusterIp": CLUSTER_IP, "tlsSecret": "/".join(SOURCE), **more}


def test_a_certificate_from_the_users_tls_secret_is_served_and_its_ca_trusted_as_one_from_the_config(own):
    run = run_stack(secret_config(sshPrivateKey="k", nodes=[{"name": "cp", "host": "192.168.56.10"}]), cluster=with_tls_secret(own))
    assert run.error is None, run.error
    assert run.of_type("tls:index/selfSignedCert:SelfSignedCert") == []
    tls = run.one("kubernetes:core/v1:Secret", "registry-tls")
    assert tls.inputs["stringData"] == {"tls.crt": own["tlsCertificate"], "tls.key": own["tlsKey"], "ca.crt": own["tlsCa"]}
    assert "stringData" in tls.secret_paths
    assert run.outputs["caCertificate"] == own["tlsCa"]
    (command,) = run.of_type("command:remote:Command")
    assert own["tlsCa"].splitlines()[1] in command.inputs["create"]
    for registration in run.resources:
        if registration.name != "registry-tls":
            assert own["tlsKey"].splitlines()[1] not in json.dumps(registration.inputs), registration.name


def test_tls_ca_names_the_ca_when_the_secret_has_no_ca_crt(own):
    data = {"tls.crt": own["tlsCertificate"], "tls.key": own["tlsKey"]}
    run = run_stack(secret_config(), cluster=with_tls_secret(own, data))
    assert "registry:tlsSecret 'cert-manager/registry-tls' ca.crt (or registry:tlsCa) is not set" in str(run.error)
    run = run_stack(secret_config(tlsCa=own["tlsCa"]), cluster=with_tls_secret(own, data))
    assert run.error is None, run.error
    assert run.outputs["caCertificate"] == own["tlsCa"]


@pytest.mark.parametrize("case, phrase", [
    ("missing", "registry:tlsSecret is 'cert-manager/registry-tls', a Secret that does not exist"),
    ("opaque without a key", "a Secret of type Opaque without tls.key; it must hold"),
    ("another name", "registry:tlsSecret 'cert-manager/registry-tls' tls.crt does not verify for 'image-registry'"),
    ("another key", "registry:tlsSecret 'cert-manager/registry-tls' tls.key (secret, not shown) is not the key of"),
    ("unreadable", "and the cluster could not be read (dial tcp"),
])
def test_a_tls_secret_that_nodes_would_refuse_is_refused_before_anything_is_created(own, case, phrase):
    cluster = with_tls_secret(own)
    _, data = cluster.secrets[SOURCE]
    if case == "missing":
        cluster.secrets.clear()
    elif case == "opaque without a key":
        cluster.secrets[SOURCE] = ("Opaque", {"tls.crt": data["tls.crt"]})
    elif case == "another name":
        key, leaf = make_leaf(own["ca"], names=("registry.example.com",), ips=(CLUSTER_IP,))
        data.update({"tls.crt": pem(leaf), "tls.key": key_pem(key)})
    elif case == "another key":
        data["tls.key"] = key_pem(ec.generate_private_key(ec.SECP256R1()))
    elif case == "unreadable":
        cluster.unreadable = True
    run = run_stack(secret_config(), cluster=cluster)
    assert run.error is not None and phrase in str(run.error), run.error
    assert run.resources == [], "nothing is registered"
    assert own["tlsKey"].splitlines()[1] not in str(run.error)


@pytest.mark.parametrize("values, phrase", [
    ({"tlsSecret": "registry-tls"}, "registry:tlsSecret 'registry-tls' is not <namespace>/<name> of a Secret"),
    ({"tlsSecret": "a/b", "tlsCertificate": "x"}, "registry:tlsSecret and registry:tlsCertificate/tlsKey are both set"),
    ({"tlsSecret": "a/b", "caGeneration": 2}, "registry:caGeneration is set, but the certificate is the user's"),
])
def test_tls_secret_config_is_checked_with_the_rest(values, phrase):
    run = run_stack({"serviceCidr": "127.0.0.0/8", **values})
    assert run.error is not None and phrase in str(run.error), run.error



@pytest.mark.parametrize("where", ["tlsCa", "tlsCertificate", "ca.crt"])
def test_a_private_key_beside_the_certificates_is_refused_and_never_published(own, where):
    # The CA's own key pasted after its certificate: it would be in the plain caCertificate
    # output, the node commands' inputs and a world-readable ca.crt on every node.
    ca_key = key_pem(own["ca"][0])
    if where == "ca.crt":
        data = {"tls.crt": own["tlsCertificate"], "tls.key": own["tlsKey"], "ca.crt": own["tlsCa"] + ca_key}
        run = run_stack(secret_config(), cluster=with_tls_secret(own, data))
        named = "registry:tlsSecret 'cert-manager/registry-tls' ca.crt (or registry:tlsCa)"
    else:
        run = run_stack(config(own, **{where: own[where] + ca_key}))
        named = f"registry:{where}"
    assert run.error is not None, "refused"
    message = str(run.error)
    assert f"{named} holds a PRIVATE KEY block" in message and "CERTIFICATE blocks only" in message, message
    assert ca_key.splitlines()[1] not in message
    assert [r for r in run.resources if r.custom] == [], "nothing is created"


def test_text_around_the_certificates_is_left_out_of_what_is_served_and_trusted(own):
    commented = f"# Example Corp root, rotated 2026\n{own['tlsCa']}\nsee the wiki\n"
    run = run_stack(config(own, tlsCa=commented, sshPrivateKey="k", nodes=[{"name": "cp", "host": "192.168.56.10"}]))
    assert run.error is None, run.error
    assert run.outputs["caCertificate"] == own["tlsCa"]
    tls = run.one("kubernetes:core/v1:Secret", "registry-tls")
    assert tls.inputs["stringData"]["ca.crt"] == own["tlsCa"]
