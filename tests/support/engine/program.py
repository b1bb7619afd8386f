"""The program as the real Pulumi engine runs it in the engine tests.

It is __main__.py with one difference, forced by what the Go module proxy
serves (tests/engine/toolchain.sh records its answer): the plugins of
pulumi-tls, pulumi-random and pulumi-command cannot be built, so their
resources cannot be registered. Instead, the test makes the CA, the server
certificate and key, and the passwords with real cryptography and gives them
to the stack as secret config in the `material` namespace; the htpasswd is
made from them by the program's own code (registry.credentials). There are no
node commands over SSH; nodeTrust cluster, which needs none, runs as it is.
Everything else is the program's own `registry.program.run`.
"""

from __future__ import annotations

import pulumi

from registry.cluster.certificate import UserCertificate
from registry.config.model import Settings
from registry.credentials import htpasswd_file
from registry.program import Material, pullers, run, serving_certificate
from registry.workload import ServingCertificate

MATERIAL = "material"


def from_config(settings: Settings, user: UserCertificate | None) -> Material:
    """The test's certificates and passwords, from the stack's `material` config."""
    config = pulumi.Config(MATERIAL)
    passwords = config.require_secret_object("passwords")
    salts = config.require_object("salts")
    pushers = list(settings.users)
    users = [*pushers, *pullers(settings)]

    def made_by_the_test() -> ServingCertificate:
        return ServingCertificate(ca_pem=config.require("caCert"), cert_pem=config.require("serverCert"),
                                  key_pem=config.require_secret("serverKey"))

    return Material(
        certificate=serving_certificate(user, made_by_the_test),
        htpasswd=passwords.apply(lambda p: htpasswd_file([(u, p[u], salts[u]) for u in users])),
        pushers=passwords.apply(lambda p: htpasswd_file([(u, p[u], salts[u]) for u in pushers])),
        http_secret=config.require_secret("httpSecret"),
        passwords={user: passwords.apply(lambda p, user=user: p[user]) for user in users},
    )


def main() -> None:
    run(from_config, node_commands=False)
