"""The program as the real Pulumi engine runs it in the engine tests.

It is __main__.py with one difference, forced by what the Go module proxy
serves (tests/engine/toolchain.sh records its answer): the plugins of
pulumi-tls, pulumi-random and pulumi-command cannot be built, so their
resources cannot be registered. Instead, the test makes the CA, the server
certificate and key, and the passwords with real cryptography and gives them
to the stack as secret config in the `material` namespace; the htpasswd is
made from them by the program's own code (registry.credentials). There are no
node commands over SSH; nodeTrust cluster, which needs none, runs as it is. The settings, the checks, the choice of certificate, the
components and the outputs are the program's own, through registry.program.
"""

from __future__ import annotations

import pulumi

from registry.credentials import htpasswd_file
from registry.preflight import check_cluster, connect, user_certificate, with_node_addresses
from registry.program import Material, deploy, prepare_nodes, serving_certificate, stack_outputs
from registry.settings import load_settings, warnings
from registry.workload import ServingCertificate

MATERIAL = "material"


def main() -> None:
    settings = load_settings()
    for warning in warnings(settings):
        pulumi.log.warn(warning)
    cluster = connect(settings)
    check_cluster(settings, cluster)
    settings = with_node_addresses(settings, cluster)
    config = pulumi.Config(MATERIAL)
    passwords = config.require_secret_object("passwords")
    salts = config.require_object("salts")
    users = list(settings.users)

    def from_config() -> ServingCertificate:
        return ServingCertificate(ca_pem=config.require("caCert"), cert_pem=config.require("serverCert"),
                                  key_pem=config.require_secret("serverKey"))

    served = Material(
        certificate=serving_certificate(user_certificate(settings, cluster), from_config),
        htpasswd=passwords.apply(lambda p: htpasswd_file([(u, p[u], salts[u]) for u in users])),
        http_secret=config.require_secret("httpSecret"),
        passwords={user: passwords.apply(lambda p, user=user: p[user]) for user in users},
    )
    # nodeTrust cluster is all Kubernetes objects, so it runs here as in __main__.py.
    nodes = prepare_nodes(settings, served.certificate.ca_pem) if settings.node_trust == "cluster" else None
    registry = deploy(settings, served, nodes) if nodes else deploy(settings, served)
    for name, value in stack_outputs(settings, served, registry).items():
        pulumi.export(name, value)
