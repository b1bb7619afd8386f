"""A long-lived CA that nodes trust, and a short-lived server certificate it signs.

Nodes trust the CA, not the leaf, so the leaf can be renewed or re-keyed
without touching a single node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_tls as tls

from .settings import Settings

SERVICE_NAME = "registry"
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


def server_dns_names(settings: Settings) -> list[str]:
    """Every name a client may dial; Go ignores the CN, so each must be a SAN."""
    names = [
        settings.hostname,
        f"{SERVICE_NAME}.{settings.namespace}.svc",
        f"{SERVICE_NAME}.{settings.namespace}.svc.cluster.local",
        "localhost",
    ]
    names += [node.host.lower() for node in settings.nodes if not node.is_ip]
    return list(dict.fromkeys(names))


def server_ip_addresses(settings: Settings) -> list[str]:
    """The fixed clusterIp (when set), every node IP (NodePort access) and loopback."""
    ips = ([settings.cluster_ip] if settings.cluster_ip else []) + [
        node.host for node in settings.nodes if node.is_ip
    ] + ["127.0.0.1"]
    return list(dict.fromkeys(ips))


@dataclass
class CertificatesArgs:
    settings: Settings


class Certificates(pulumi.ComponentResource):
    ca_cert_pem: pulumi.Output[str]
    server_cert_pem: pulumi.Output[str]
    server_key_pem: pulumi.Output[str]

    def __init__(self, name: str, args: CertificatesArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("registry:index:Certificates", name, None, opts)
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self)

        ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        ca = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            validity_period_hours=CA_VALIDITY_HOURS,
            early_renewal_hours=CA_EARLY_RENEWAL_HOURS,
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=f"{settings.hostname} registry CA",
                organization="registry (pulumi)",
            ),
            opts=child,
        )

        server_key = tls.PrivateKey(f"{name}-server-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        request = tls.CertRequest(
            f"{name}-server-request",
            private_key_pem=server_key.private_key_pem,
            dns_names=server_dns_names(settings),
            ip_addresses=server_ip_addresses(settings),
            subject=tls.CertRequestSubjectArgs(common_name=settings.hostname),
            opts=child,
        )
        validity_hours = settings.cert_validity_days * 24
        server = tls.LocallySignedCert(
            f"{name}-server",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca.cert_pem,
            validity_period_hours=validity_hours,
            early_renewal_hours=early_renewal_hours(validity_hours),
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            opts=child,
        )

        self.ca_cert_pem = ca.cert_pem
        self.server_cert_pem = server.cert_pem
        self.server_key_pem = server_key.private_key_pem
        self.register_outputs({"caCertPem": self.ca_cert_pem, "serverCertPem": self.server_cert_pem})
