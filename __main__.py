"""Pulumi program: a private, TLS- and password-protected registry that every node trusts."""

import pulumi

from registry.certificates import Certificates, CertificatesArgs
from registry.credentials import Credentials, CredentialsArgs
from registry.node_storage import NodeStorage, NodeStorageArgs
from registry.node_trust import NodeTrust, NodeTrustArgs
from registry.preflight import check_cluster
from registry.program import Material, deploy_in_cluster, stack_outputs
from registry.settings import load_settings

settings = load_settings()
# Reads the cluster before anything is created, and the user's certificate, if any.
user_certificate = check_cluster(settings)

credentials = Credentials("registry", CredentialsArgs(users=settings.users))
if user_certificate is not None:
    # From the config or the user's Secret, checked (registry/own_certificate.py): no CA of ours.
    ca_bundle_pem, server_cert_pem, server_key_pem = user_certificate.ca, user_certificate.certificate, user_certificate.key
else:
    certificates = Certificates("registry", CertificatesArgs(settings=settings))
    ca_bundle_pem = certificates.ca_bundle_pem
    server_cert_pem, server_key_pem = certificates.server_cert_pem, certificates.server_key_pem
material = Material(
    ca_cert_pem=ca_bundle_pem,
    server_cert_pem=server_cert_pem,
    server_key_pem=server_key_pem,
    htpasswd=credentials.htpasswd,
    http_secret=credentials.http_secret,
    passwords=credentials.passwords,
)


def prepare_nodes(workload):
    """Every node trusts the CA bundle and resolves the name, and with storage node
    the data folder is ready; the pods roll out after."""
    ready = []
    if settings.storage == "node":
        ready.append(NodeStorage("registry-storage", NodeStorageArgs(settings=settings)).command)
    trust = NodeTrust(
        "registry-node",
        NodeTrustArgs(
            settings=settings,
            ca_cert_pem=ca_bundle_pem,
            cluster_ip=workload.cluster_ip,
            service=workload.service,
        ),
    )
    return ready + list(trust.commands.values())


cluster = deploy_in_cluster(settings, material, prepare_nodes)

for name, value in stack_outputs(settings, material, cluster).items():
    pulumi.export(name, value)
