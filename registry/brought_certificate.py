"""A server certificate the user brings (tlsCertificate, tlsKey, tlsCa, or the
Secret named by tlsSecret) instead of the program's own CA: an enterprise CA's,
or one that cert-manager issued.

Checked before anything is created, so that a certificate the nodes would
refuse never reaches a pod: it parses, the key is its key, it is valid now,
it names `hostname` (clients dial the name, and Go ignores the CN), and it
chains to the CA certificates the nodes will trust.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError


@dataclass(frozen=True)
class Names:
    """What the messages call the certificate, the key and the CA: config keys, or a Secret's fields."""

    certificate: str = "registry:tlsCertificate"
    key: str = "registry:tlsKey"
    ca: str = "registry:tlsCa"


CONFIG = Names()

_PEM_TYPE = re.compile(r"-----BEGIN ([^-\n]+)-----")


def certificates_pem(text: str) -> str:
    """The certificates of a PEM text, written anew: nothing else of it (comments,
    other blocks) is served, published or installed on a node."""
    certificates = x509.load_pem_x509_certificates(text.encode())
    return "".join(cert.public_bytes(serialization.Encoding.PEM).decode() for cert in certificates)


def _other_blocks(text: str, name: str) -> list[str]:
    """A PEM text that is to hold certificates, and holds a key (say) besides: refused,
    since what holds certificates here is public (the caCertificate output, nodes' ca.crt)."""
    others = sorted({kind for kind in _PEM_TYPE.findall(text) if kind != "CERTIFICATE"})
    return [
        f"{name} holds a {kind} block; it must hold CERTIFICATE blocks only (what it holds is published and "
        "installed on every node): take the block out"
        for kind in others
    ]


def problems(certificate: str, key: str | None, ca: str | None, hostname: str, names: Names = CONFIG) -> list[str]:
    """What is wrong with the certificate, key and CA, one line each (key material never quoted)."""
    found: list[str] = _other_blocks(certificate, names.certificate) + _other_blocks(ca or "", names.ca)
    try:
        chain = x509.load_pem_x509_certificates(certificate.encode())
    except ValueError:
        return [f"{names.certificate} is not PEM certificates (the server certificate first, then any intermediates)"]
    leaf = chain[0]
    if key is None:
        found.append(
            f"{names.key} is not set; give the certificate's private key with "
            "`pulumi config set --secret registry:tlsKey < key.pem`"
        )
    else:
        try:
            private = serialization.load_pem_private_key(key.encode(), password=None)
        except (ValueError, TypeError):
            found.append(f"{names.key} (secret, not shown) is not an unencrypted PEM private key")
        else:
            public = serialization.PublicFormat.SubjectPublicKeyInfo
            if private.public_key().public_bytes(serialization.Encoding.PEM, public) != leaf.public_key().public_bytes(
                serialization.Encoding.PEM, public
            ):
                found.append(f"{names.key} (secret, not shown) is not the key of {names.certificate}")
    now = datetime.datetime.now(datetime.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        found.append(
            f"{names.certificate} is valid from {leaf.not_valid_before_utc:%Y-%m-%d} "
            f"to {leaf.not_valid_after_utc:%Y-%m-%d}, not now"
        )
    if ca is None:
        found.append(f"{names.ca} is not set; give the CA certificate(s) the nodes should trust for it")
        return found
    try:
        roots = x509.load_pem_x509_certificates(ca.encode())
    except ValueError:
        found.append(f"{names.ca} is not PEM certificates")
        return found
    try:
        verifier = PolicyBuilder().store(Store(roots)).time(now).build_server_verifier(x509.DNSName(hostname))
        verifier.verify(leaf, chain[1:])
    except VerificationError as error:
        found.append(
            f"{names.certificate} does not verify for {hostname!r} against {names.ca}: {error}; "
            f"it must name {hostname!r} in its subject alternative names and chain to that CA"
        )
    return found


def expires(certificate: str) -> datetime.datetime:
    """When the server certificate (the first in the PEM) stops being valid."""
    return x509.load_pem_x509_certificates(certificate.encode())[0].not_valid_after_utc
