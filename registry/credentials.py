"""Passwords, the htpasswd files the registry's proxy checks them against, and the registry's HTTP secret."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

import bcrypt
import pulumi
import pulumi_random as random

PASSWORD_LENGTH = 32

# The registry checks bcrypt on every request and caches nothing (GUIDE §5), so
# the cost multiplies the price of every layer of every pull. Measured with the
# real registry and skopeo (bench/auth_cost.py, table in the README): cost 5
# makes a push+pull 1.2x as long as without auth, cost 10 7.6x, cost 12 28x.
# The cost only slows offline guessing of a stolen htpasswd, and a generated
# 32-character alphanumeric password (~190 bits) cannot be guessed at any cost. 5 rather than bcrypt's
# minimum of 4 keeps a little margin should someone put a hand-made entry into
# the htpasswd Secret; it costs about a tenth more than 4.
BCRYPT_COST = 5

_STD_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT_B64 = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TO_BCRYPT = bytes.maketrans(_STD_B64, _BCRYPT_B64)


def bcrypt_salt(salt_hex: str, cost: int = BCRYPT_COST) -> bytes:
    """A bcrypt salt string from 16 random bytes given as hex (a RandomId's `hex`).

    bcrypt's base64 packs bits like standard base64 but with its own alphabet;
    16 bytes give 22 characters once the '==' padding is dropped.
    """
    raw = bytes.fromhex(salt_hex)
    if len(raw) != 16:
        raise ValueError(f"a bcrypt salt takes 16 bytes, got {len(raw)}")
    encoded = base64.b64encode(raw).rstrip(b"=").translate(_TO_BCRYPT)
    return b"$2b$%02d$" % cost + encoded


def htpasswd_line(user: str, password: str, salt_hex: str, cost: int = BCRYPT_COST) -> str:
    digest = bcrypt.hashpw(password.encode(), bcrypt_salt(salt_hex, cost)).decode()
    return f"{user}:{digest}"


def htpasswd_file(entries: Sequence[tuple[str, str, str]], cost: int = BCRYPT_COST) -> str:
    """`user:bcrypt` lines for (user, password, salt_hex); the same input gives the same bytes."""
    return "".join(htpasswd_line(user, password, salt, cost) + "\n" for user, password, salt in entries)


@dataclass
class CredentialsArgs:
    # Who pushes, pulls and deletes.
    users: Sequence[str]
    # Who only pulls (registry:pullers and the pull secrets' user).
    pullers: Sequence[str] = ()


class Credentials(pulumi.ComponentResource):
    # Everyone's, pushers' and pullers'.
    passwords: dict[str, pulumi.Output[str]]
    # Everyone's lines, which reads are checked against; `pushers`: the pushers' lines alone, for writes.
    htpasswd: pulumi.Output[str]
    pushers: pulumi.Output[str]
    http_secret: pulumi.Output[str]

    def __init__(self, name: str, args: CredentialsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("registry:index:Credentials", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.passwords = {}
        lines: dict[str, pulumi.Output[str]] = {}
        for user in [*args.users, *args.pullers]:
            # Alphanumerics only: nothing a shell, a URL or a YAML file would
            # reinterpret, and still ~190 bits at 32 characters.
            password = random.RandomPassword(
                f"{name}-{user}-password",
                length=PASSWORD_LENGTH,
                special=False,
                min_lower=1,
                min_upper=1,
                min_numeric=1,
                opts=child,
            )
            # The salt is state, not a fresh gensalt(), so the htpasswd is the
            # same bytes on every run and `pulumi up` shows no change; a new
            # password still changes its line.
            salt = random.RandomId(f"{name}-{user}-salt", byte_length=16, opts=child)
            self.passwords[user] = password.result
            lines[user] = pulumi.Output.all(password.result, salt.hex).apply(
                lambda values, user=user: htpasswd_line(user, values[0], values[1]) + "\n"
            )

        self.htpasswd = pulumi.Output.all(*lines.values()).apply("".join)
        self.pushers = pulumi.Output.all(*(lines[user] for user in args.users)).apply("".join)
        self.http_secret = random.RandomPassword(f"{name}-http-secret", length=64, special=False, opts=child).result
        self.register_outputs({})
