"""What the rotation tests share: the config, a run, and reading CAs and certificates out of a run."""


from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.constants import CLUSTER_IP, COMMAND
from tests.support.stack import ProviderState, StackRun, run_stack

SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
PASSWORD = "random:index/randomPassword:RandomPassword"
IMAGE = "day-two/app:v1"


def config(private_key: str = "key", nodes=None, generation: int = 1) -> dict:
    return {
        "serviceCidr": "127.0.0.0/8",
        "clusterIp": CLUSTER_IP,
        "users": ["admin", "ci"],
        "sshPrivateKey": private_key,
        "caGeneration": generation,
        "nodes": nodes if nodes is not None else [
            {"name": "n1", "host": "192.168.56.10"}, {"name": "n2", "host": "192.168.56.11"},
        ],
    }


def up(values: dict, state: ProviderState) -> StackRun:
    run = run_stack(values, state)
    assert run.error is None, run.error
    return run


def cas(run: StackRun) -> dict[str, str]:
    """CA certificate PEM by resource name."""
    return {r.name: r.outputs["certPem"] for r in run.of_type(SELF_SIGNED)}


def bundle(run: StackRun) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(run.outputs["caCertificate"].encode())


def serving(run: StackRun) -> x509.Certificate:
    tls = run.one("kubernetes:core/v1:Secret", "registry-tls").inputs["stringData"]
    return x509.load_pem_x509_certificate(tls["tls.crt"].encode())


def signed_by(leaf: x509.Certificate, ca_pem: str) -> bool:
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    try:
        ca.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm))
    except Exception:
        return False
    return leaf.issuer == ca.subject


def commands(run: StackRun) -> dict[str, dict]:
    return {c.name: c.inputs for c in run.of_type(COMMAND)}

def replace_password(state: ProviderState, run: StackRun, user: str) -> None:
    """What `pulumi up --replace <urn>` does to that one resource."""
    del state.by_urn[run.one(PASSWORD, f"registry-{user}-password").urn]

def kubernetes_inputs(run: StackRun) -> dict[str, dict]:
    return {r.name: r.inputs for r in run.resources if r.type.startswith("kubernetes:")}

def htpasswd_lines(run: StackRun) -> dict[str, str]:
    text = run.one("kubernetes:core/v1:Secret", "registry-auth").inputs["stringData"]["htpasswd"]
    return dict(line.split(":", 1) for line in text.splitlines())
