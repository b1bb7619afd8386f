"""A long-lived CA that nodes trust, and a short-lived server certificate it signs.

Nodes trust the CA, not the leaf, so the leaf can be renewed or re-keyed
without touching a single node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

from .config.types import is_ip
from .names import service_dns_names

CA_VALIDITY_HOURS = 10 * 365 * 24
# Replace the CA during the last year of its ten: that gives every node a
# whole year of `pulumi up` runs to pick up the new one.
CA_EARLY_RENEWAL_HOURS = 365 * 24


def early_renewal_hours(validity_hours: int) -> int:
    """Renew a leaf in the last third of its life, but never more than 30 days early.

    pulumi-tls marks the certificate ready_for_renewal once inside this window,
    and the next `pulumi up` replaces it.
    """
    return max(1, min(30 * 24, validity_hours // 3))


def server_dns_names(args: CertificatesArgs) -> list[str]:
    """Every name a client may dial; Go ignores the CN, so each must be a SAN."""
    names = [args.hostname, *service_dns_names(args.namespace), "localhost"]
    names += [host.lower() for host in args.node_hosts if not is_ip(host)]
    return list(dict.fromkeys(names))


def server_ip_addresses(args: CertificatesArgs) -> list[str]:
    """The fixed clusterIp (when set), every node IP (NodePort access) and loopback."""
    ips = (
        ([args.cluster_ip] if args.cluster_ip else [])
        + [host for host in args.node_hosts if is_ip(host)]
        + ["127.0.0.1"]
    )
    return list(dict.fromkeys(ips))


@dataclass
class CertificatesArgs:
    hostname: str
    namespace: str
    # The nodes' addresses or DNS names: clients outside the cluster dial them (node port).
    node_hosts: Sequence[str] = ()
    cluster_ip: str | None = None
    ca_generation: int = 1
    validity_days: int = 365


def ca_generations(generation: int) -> list[int]:
    """The CA generations that exist at `caGeneration` N: N and N-1, newest first."""
    return [g for g in (generation, generation - 1) if g >= 1]


def ca_resource_names(name: str, generation: int) -> tuple[str, str]:
    """The key's and the certificate's resource names of one CA generation.

    Generation 1 keeps the names a stack had before rotation existed, so
    raising caGeneration for the first time adds generation 2 and keeps 1.
    """
    suffix = "" if generation == 1 else f"-g{generation}"
    return f"{name}-ca-key{suffix}", f"{name}-ca{suffix}"


def trust_bundle(pems: list[str]) -> str:
    """The certificates nodes and clients trust, newest first, one PEM file."""
    return "".join(pem.strip() + "\n" for pem in pems)


class Certificates(pulumi.ComponentResource):
    """CA generations N and N-1 (caGeneration), and a server certificate signed by N.

    Clients trust the bundle of both (`ca_bundle_pem`): raising caGeneration
    adds N+1 to every node while the pods still serve a certificate of N, then
    the pods roll to one signed by N+1, and N-1 goes.
    """

    ca_bundle_pem: pulumi.Output[str]
    server_cert_pem: pulumi.Output[str]
    server_key_pem: pulumi.Output[str]

    def __init__(self, name: str, args: CertificatesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("registry:index:Certificates", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        cas = []
        for generation in ca_generations(args.ca_generation):
            key_name, cert_name = ca_resource_names(name, generation)
            ca_key = tls.PrivateKey(key_name, algorithm="ECDSA", ecdsa_curve="P256", opts=child)
            common_name = f"{args.hostname} registry CA"
            ca = tls.SelfSignedCert(
                cert_name,
                private_key_pem=ca_key.private_key_pem,
                is_ca_certificate=True,
                allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
                validity_period_hours=CA_VALIDITY_HOURS,
                early_renewal_hours=CA_EARLY_RENEWAL_HOURS,
                subject=tls.SelfSignedCertSubjectArgs(
                    common_name=common_name if generation == 1 else f"{common_name} {generation}",
                    organization="registry (pulumi)",
                ),
                opts=child,
            )
            cas.append((ca_key, ca))
        signing_key, signing_ca = cas[0]

        server_key = tls.PrivateKey(f"{name}-server-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        request = tls.CertRequest(
            f"{name}-server-request",
            private_key_pem=server_key.private_key_pem,
            dns_names=server_dns_names(args),
            ip_addresses=server_ip_addresses(args),
            subject=tls.CertRequestSubjectArgs(common_name=args.hostname),
            opts=child,
        )
        validity_hours = args.validity_days * 24
        server = tls.LocallySignedCert(
            f"{name}-server",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=signing_key.private_key_pem,
            ca_cert_pem=signing_ca.cert_pem,
            validity_period_hours=validity_hours,
            early_renewal_hours=early_renewal_hours(validity_hours),
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            opts=child,
        )

        self.ca_bundle_pem = pulumi.Output.all(*(ca.cert_pem for _, ca in cas)).apply(trust_bundle)
        self.server_cert_pem = server.cert_pem
        self.server_key_pem = server_key.private_key_pem
        self.register_outputs({"caBundlePem": self.ca_bundle_pem, "serverCertPem": self.server_cert_pem})
