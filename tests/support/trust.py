"""Helpers for the node-command tests: the program's commands, running them, and what to check."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store

from registry.node_script import NodeTrustParams, create_script, delete_script, remote_command
from registry.node_script import program as program_text
from tests.support.constants import CLUSTER_IP, NAME
from tests.support.nodes import Node, diff
from tests.support.stack import ProviderState, run_stack

# The stack the mock layer runs the program as; node commands record it as their owner.
STACK = "organization/registry/test"
ID = "image-registry:5000"
STORE_DIR = "/usr/local/share/ca-certificates"
BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
WITH_CONFIG_PATH = (
    "mkdir -p /etc/containerd && cat > /etc/containerd/config.toml <<'EOF'\n"
    "version = 2\n"
    "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
    "  config_path = \"/etc/containerd/certs.d\"\n"
    "EOF\n"
)
FAKE_K3S = "printf '#!/bin/sh\\nexit 0\\n' > /usr/local/bin/k3s && chmod 755 /usr/local/bin/k3s && mkdir -p /etc/rancher/k3s\n"
ADD_DEPLOY = "useradd -M -d /nonexistent -s /bin/sh deploy && usermod -p '*' deploy\n"
# What every command reads on stdin.
PROGRAM = program_text()


@dataclass(frozen=True)
class Program:
    """One run of the program under the mock layer: its node commands, the CA and server certificate."""

    commands: dict[str, dict]  # node entry -> the remote.Command's inputs
    ca: str
    leaf: x509.Certificate

    def create(self, who: str = "root") -> str:
        return self.commands[who]["create"]

    def delete(self, who: str = "root") -> str:
        return self.commands[who]["delete"]


def program_run(private_key: str, state: ProviderState | None = None) -> Program:
    """The program's own commands, one per kind of node connection the tests use."""
    config = {
        "serviceCidr": "127.0.0.0/8",
        "clusterIp": CLUSTER_IP,
        "sshPrivateKey": private_key,
        "nodes": [
            {"name": "root", "host": "127.0.20.250", "port": 2222},
            {"name": "deploy", "host": "127.0.20.251", "port": 2222, "user": "deploy"},
            {"name": "docker", "host": "127.0.20.252", "port": 2222, "runtime": "docker"},
        ],
    }
    run = run_stack(config, state)
    assert run.error is None, run.error
    commands = {c.name.removeprefix("registry-node-"): c.inputs for c in run.of_type("command:remote:Command")}
    tls = run.one("kubernetes:core/v1:Secret", "registry-tls").inputs["stringData"]
    return Program(commands, run.outputs["caCertificate"], x509.load_pem_x509_certificate(tls["tls.crt"].encode()))


def command(
    action: str, ca: str = "", *, entry: str = "root", stack: str = STACK, ip: str = CLUSTER_IP, port: int = 5000,
    runtime: str = "auto", user: str = "root", **extra,
) -> str:
    """A node command as the program builds it, for another owner, address, port or runtime."""
    params = NodeTrustParams(NAME, port, stack, entry, runtime=runtime, **{k: v for k, v in extra.items() if k == "step_timeout"})
    injected = {k: v for k, v in extra.items() if k != "step_timeout"}
    script = create_script(params, ip, ca, **injected) if action == "create" else delete_script(params)
    return remote_command(script, user)


def run(node: Node, line: str, **kwargs):
    """A node command over SSH, the program on its stdin, as pulumi-command sends it."""
    return node.ssh(line, stdin=PROGRAM, **kwargs)


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def failed(result, *phrases):
    assert result.returncode != 0, f"expected a failure, got exit 0\nstderr: {result.stderr}"
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr
    return result


def store_file_names(bundle: str) -> list[str]:
    """The system-store file names the node program gives the certificates of a bundle:
    the first 16 hex digits of the sha256 of each PEM block."""
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----\n", bundle.strip() + "\n", re.S)
    assert blocks, bundle
    return [f"registry-node-trust-{NAME}-5000-{hashlib.sha256(b.encode()).hexdigest()[:16]}.crt" for b in blocks]


def store_file_name(ca: str) -> str:
    (name,) = store_file_names(ca)
    return name


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def ca_in_bundle(node: Node, ca: str, bundle: str = BUNDLE) -> bool:
    wanted = _der(x509.load_pem_x509_certificate(ca.encode()))
    return any(_der(c) == wanted for c in x509.load_pem_x509_certificates(node.read(bundle)))


def assert_system_trusted(node: Node, program: Program, bundle: str = BUNDLE) -> None:
    """The system store verifies our server certificate for the registry's name."""
    assert ca_in_bundle(node, program.ca, bundle)
    _verifies(x509.load_pem_x509_certificates(node.read(bundle)), program)


# Where runtimes read a registry's CA of their own (registry/node/trust.sh).
RUNTIME_CA_FILES = (f"/etc/containerd/certs.d/{ID}/ca.crt", f"/etc/docker/certs.d/{ID}/ca.crt",
                    f"/etc/containers/certs.d/{ID}/ca.crt", f"/etc/rancher/k3s/registry-node-trust/{ID}/ca.crt")


def assert_trusted(node: Node, program: Program) -> None:
    """Every place of ours the node's runtimes read verifies our server certificate, and
    there is at least one: a runtime's own CA file, or the system store where our file is."""
    places = [path for path in RUNTIME_CA_FILES if node.path(path).exists()]
    for path in places:
        _verifies(x509.load_pem_x509_certificates(node.read(path)), program)
    if any(node.path(STORE_DIR).glob(f"registry-node-trust-{NAME}-5000-*.crt")):
        assert_system_trusted(node, program)
        places.append(BUNDLE)
    assert places, "the node trusts the registry's CA nowhere"


def _verifies(trusted: list[x509.Certificate], program: Program) -> None:
    PolicyBuilder().store(Store(trusted)).build_server_verifier(x509.DNSName(NAME)).verify(program.leaf, [])


def mappings(node: Node, name: str = NAME) -> list[str]:
    """Active (uncommented) addresses that /etc/hosts gives `name`."""
    found = []
    for line in node.read("/etc/hosts").decode().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) > 1 and name in fields[1:]:
            found.append(fields[0])
    return found


def lifecycle(node: Node, program: Program, who: str = "root", user: str = "root"):
    """create, create again, delete, delete again, over SSH as `user`; returns the snapshot after the first create."""
    before = node.snapshot()
    ok(run(node, program.create(who), user=user))
    created = node.snapshot()
    assert diff(before, created), "create changed nothing"
    assert mappings(node) == [CLUSTER_IP]
    assert_trusted(node, program)
    ok(run(node, program.create(who), user=user))
    assert diff(created, node.snapshot()) == [], "a second create must change nothing"
    ok(run(node, program.delete(who), user=user))
    assert diff(before, node.snapshot()) == [], "delete must restore the node byte for byte"
    assert not ca_in_bundle(node, program.ca)
    ok(run(node, program.delete(who), user=user))
    assert diff(before, node.snapshot()) == [], "a second delete must change nothing"
    return created
