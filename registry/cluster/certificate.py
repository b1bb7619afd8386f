"""The server certificate a user brings, in the config or in a kubernetes.io/tls
Secret (`tlsSecret`), read and checked as the program will serve it."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import pulumi

from .. import brought_certificate
from ..config.model import Settings
from ..config.types import SettingsError
from .view import CannotRead, ClusterView

# A certificate from tlsSecret closer than this to its end gets a warning at every run.
EXPIRY_WARNING = datetime.timedelta(days=21)


@dataclass(frozen=True)
class UserCertificate:
    """The server certificate the user brings, its key and the CA nodes trust for it."""

    certificate: str
    key: pulumi.Output[str]
    ca: str


def _unreadable_tls_secret(settings: Settings, reason: CannotRead) -> SettingsError:
    assert settings.tls_secret is not None
    return SettingsError(
        f"registry:tlsSecret is {'/'.join(settings.tls_secret)!r}, and the cluster could not "
        f"be read ({reason}); the server certificate comes from there"
    )


def user_certificate(settings: Settings, cluster: ClusterView) -> UserCertificate | None:
    """The certificate the user brings, from the config or from tlsSecret (as
    check_cluster accepted it), or None when the program makes its own."""
    if settings.tls_certificate is not None:
        assert settings.tls_key is not None and settings.tls_ca is not None, (
            "registry/config/rules.py requires all three"
        )
        return UserCertificate(
            brought_certificate.certificates_pem(settings.tls_certificate),
            settings.tls_key,
            brought_certificate.certificates_pem(settings.tls_ca),
        )
    if settings.tls_secret is None:
        return None
    try:
        _, certificate = read_tls_secret(settings, cluster)
    except CannotRead as reason:
        raise _unreadable_tls_secret(settings, reason) from None
    assert certificate is not None, "check_cluster refuses a tlsSecret it cannot serve"
    left = brought_certificate.expires(certificate.certificate) - datetime.datetime.now(datetime.UTC)
    if left < EXPIRY_WARNING:
        pulumi.log.warn(
            f"registry:tlsSecret {'/'.join(settings.tls_secret)!r} holds a certificate that expires in "
            f"{left.days} days; once it is renewed there, run pulumi up again to serve the new one"
        )
    return certificate


def read_tls_secret(settings: Settings, cluster: ClusterView) -> tuple[list[str], UserCertificate | None]:
    """The certificate in the user's kubernetes.io/tls Secret (cert-manager's, say), checked as one from the
    config is: (problems, None) or ([], the certificate). The program copies it into its own TLS Secret at
    each run: the copy follows a renewal at the next `pulumi up`."""
    assert settings.tls_secret is not None
    namespace, name = settings.tls_secret
    where = f"{namespace}/{name}"
    found = cluster.secret(namespace, name)
    if found is None:
        return [
            f"registry:tlsSecret is {where!r}, a Secret that does not exist (kubectl -n {namespace} get secret {name})"
        ], None
    kind, data = found
    missing = [field for field in ("tls.crt", "tls.key") if not data.get(field)]
    if missing:
        return [
            f"registry:tlsSecret is {where!r}, a Secret of type {kind} without {' and '.join(missing)}; "
            "it must hold the server certificate in tls.crt and its key in tls.key (type kubernetes.io/tls)"
        ], None
    ca = settings.tls_ca or data.get("ca.crt") or None
    names = brought_certificate.Names(
        certificate=f"registry:tlsSecret {where!r} tls.crt",
        key=f"registry:tlsSecret {where!r} tls.key",
        ca="registry:tlsCa" if settings.tls_ca else f"registry:tlsSecret {where!r} ca.crt (or registry:tlsCa)",
    )
    problems = brought_certificate.problems(data["tls.crt"], data["tls.key"], ca, settings.hostname, names)
    if problems:
        return problems, None
    assert ca is not None, "brought_certificate.problems refuses a certificate without a CA"
    return [], UserCertificate(
        brought_certificate.certificates_pem(data["tls.crt"]),
        pulumi.Output.secret(data["tls.key"]),
        brought_certificate.certificates_pem(ca),
    )
