"""Pulumi program: a private, TLS- and password-protected registry that every node trusts."""

import sys

# Before anything else is imported: the program uses what Python 3.11 added.
if sys.version_info < (3, 11):  # noqa: UP036  (the program says so, instead of failing somewhere)
    raise SystemExit(
        f"registry: this program needs Python 3.11 or later, and runs on {sys.version.split()[0]} "
        f"({sys.executable}); install 3.11, then make the virtualenv again: rm -rf venv && pulumi install"
    )

import pulumi

from registry.preflight import check_cluster, connect, user_certificate, with_node_addresses
from registry.program import (
    deploy,
    material,
    own_certificates,
    passwords,
    prepare_nodes,
    serving_certificate,
    stack_outputs,
)
from registry.settings import load_settings, warnings

settings = load_settings()
for warning in warnings(settings):
    pulumi.log.warn(warning)

# Read the cluster before anything is created: every problem it shows stops the program here.
cluster = connect(settings)
check_cluster(settings, cluster)
settings = with_node_addresses(settings, cluster)

credentials = passwords(settings)
# The user's certificate (registry:tlsCertificate or tlsSecret), or a CA and a certificate of our own.
certificate = serving_certificate(user_certificate(settings, cluster), lambda: own_certificates(settings))
served = material(certificate, credentials)
registry = deploy(settings, served, prepare_nodes(settings, certificate.ca_pem))

for name, value in stack_outputs(settings, served, registry).items():
    pulumi.export(name, value)
