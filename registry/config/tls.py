"""The settings of a server certificate the user brings instead of the program's own CA.
One field per config key (registry/config/keys.py declares how)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from .checks import (
    secret_reference,
)
from .keys import setting
from .validators import (
    text,
)


@dataclass(frozen=True)
class TlsSettings:
    tls_certificate: str | None = setting(
        "tlsCertificate",
        text,
        None,
        "A server certificate you bring (PEM).",
        doc=(
            "a server certificate you bring (PEM, intermediates after it), from your own CA or "
            "exported from cert-manager, instead of the program's CA; it must name `hostname`. With "
            "`tlsKey` and `tlsCa`, all checked before anything is created"
        ),
    )
    tls_key: pulumi.Output[str] | None = setting(
        "tlsKey",
        text,
        None,
        "Its private key (PEM).",
        secret=True,
        doc=("its private key, unencrypted PEM: `pulumi config set --secret registry:tlsKey < server.key`"),
    )
    tls_ca: str | None = setting(
        "tlsCa",
        text,
        None,
        "The CA certificate(s) nodes trust for it.",
        doc=(
            "the CA certificate(s) nodes and clients trust for it (`caCertificate` then gives these)."
            " To move to a new CA, list both here first, `pulumi up`, then the new certificate"
        ),
    )
    tls_secret: tuple[str, str] | None = setting(
        "tlsSecret",
        secret_reference,
        None,
        "<namespace>/<name> of a kubernetes.io/tls Secret to serve instead.",
        doc=(
            "instead of `tlsCertificate` and `tlsKey`: `<namespace>/<name>` of a `kubernetes.io/tls` "
            "Secret you keep in the cluster, such as the one a cert-manager Certificate writes. Read "
            "and checked as above before anything is created; nodes trust its `ca.crt`, or `tlsCa` "
            "when given. The program copies it into the registry's own TLS Secret at each `pulumi "
            "up`: after cert-manager renews it, `pulumi preview` shows the copy changing and `pulumi "
            "up` serves the new one (a certificate within 21 days of its end gets a warning at every "
            "run; nothing renews the copy between runs, so run `pulumi up` after each renewal). "
            "Whoever may write Secrets in that namespace chooses the CA every node trusts at the next"
            " `pulumi up`: keep it a namespace only cluster admins write to, or pin the CA with "
            "`tlsCa`"
        ),
    )
