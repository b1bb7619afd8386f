"""Small checks for config values, composable for lists and objects.

A check takes the value, where it sits (`nodes[0].port`) and the list of
problems found so far. It returns the value as the program uses it, or
INVALID after adding one problem that names the key, shows the value and says
what is accepted: `registry:<where> <value> <what is accepted>`. A list keeps
its good items, so that rules over other keys still see them.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Problems = list[str]
Check = Callable[[Any, str, Problems], Any]

JSON_HINT = "(give it as YAML/JSON, e.g. with `pulumi config set --path`)"


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()


def refuse(problems: Problems, where: str, shown: Any, accepted: str) -> Any:
    problems.append(f"registry:{where} {shown} {accepted}")
    return INVALID


def failed(value: Any) -> bool:
    return value is INVALID


# ---- scalars, as config strings ---------------------------------------------------


def integer(low: int, high: int) -> Check:
    def check(raw: Any, where: str, problems: Problems) -> Any:
        try:
            value = int(str(raw).strip())
        except ValueError:
            return refuse(problems, where, repr(raw), f"is not a whole number; it must be between {low} and {high}")
        if not low <= value <= high:
            return refuse(problems, where, value, f"must be between {low} and {high}")
        return value

    return check


def boolean(raw: Any, where: str, problems: Problems) -> Any:
    value = str(raw).strip().lower()
    if value not in ("true", "false"):
        return refuse(problems, where, repr(raw), "must be true or false")
    return value == "true"


def one_of(*accepted: str, show: Callable[[Any], str] = repr) -> Check:
    def check(raw: Any, where: str, problems: Problems) -> Any:
        if raw not in accepted:
            return refuse(problems, where, show(raw), f"must be one of {', '.join(accepted)}")
        return raw

    return check


def matches(pattern: str, accepted: str, show: Callable[[Any], str] = repr) -> Check:
    """A string that `pattern` matches whole."""
    compiled = re.compile(pattern)

    def check(raw: Any, where: str, problems: Problems) -> Any:
        if not isinstance(raw, str) or not compiled.fullmatch(raw):
            return refuse(problems, where, show(raw), accepted)
        return raw

    return check


def text(raw: Any, where: str, problems: Problems) -> Any:
    """Any value, as given: checked by a rule, which knows what it depends on."""
    return raw


def all_of(*checks: Check) -> Check:
    """Each check in turn on the value the one before returned; stops at the first refusal."""

    def check(raw: Any, where: str, problems: Problems) -> Any:
        value = raw
        for one in checks:
            value = one(value, where, problems)
            if failed(value):
                return INVALID
        return value

    return check


def network(raw: Any, where: str, problems: Problems) -> Any:
    try:
        return str(ipaddress.ip_network(raw, strict=True))
    except ValueError:
        return refuse(
            problems, where, repr(raw), "is not a network in CIDR form with no host bits set, such as 10.96.0.0/12"
        )


def ip_address(raw: Any, where: str, problems: Problems) -> Any:
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return refuse(problems, where, repr(raw), "is not an IP address")


# ---- JSON values: lists and objects -------------------------------------------------


def _decoded(raw: Any) -> tuple[bool, Any]:
    if not isinstance(raw, str):
        return True, raw
    try:
        return True, json.loads(raw)
    except ValueError:
        return False, raw


def json_list(item: Check, unique: str | None = None, non_empty: str | None = None) -> Check:
    """A list (a config string holding JSON, or a list) whose items pass `item`.

    `unique`: what to say of an item listed twice. `non_empty`: what to say of [].
    Returns a tuple of the items that passed.
    """

    def check(raw: Any, where: str, problems: Problems) -> Any:
        ok, value = _decoded(raw)
        if not ok:
            return refuse(problems, where, repr(raw), f"is not a list {JSON_HINT}")
        if not isinstance(value, list):
            return refuse(problems, where, json.dumps(value), "must be a list")
        if not value and non_empty:
            return refuse(problems, where, "[]", non_empty)
        good: list = []
        seen: list = []
        for index, entry in enumerate(value):
            at = f"{where}[{index}]"
            parsed = item(entry, at, problems)
            if failed(parsed):
                continue
            if unique and parsed in seen:
                refuse(problems, at, repr(entry), unique)
                continue
            seen.append(parsed)
            good.append(parsed)
        return tuple(good)

    return check


def json_object(shape: str) -> Check:
    """An object (a config string holding JSON, or a dict), as given."""

    def check(raw: Any, where: str, problems: Problems) -> Any:
        _, value = _decoded(raw)
        if not isinstance(value, dict):
            return refuse(problems, where, repr(raw), f"must be an object {shape} {JSON_HINT}")
        return value

    return check


@dataclass(frozen=True)
class Field:
    check: Check
    default: Any = None
    required: str | None = None  # what to say when it is missing


def obj(fields: dict[str, Field], build: Callable[..., Any], not_object: str | None = None) -> Check:
    """An object of known keys, each checked by its field; `build(**values)` makes the result.

    Unknown keys are one problem; every field is still checked, so every problem
    shows at once, and the object is INVALID if any was found.
    """

    def check(value: Any, where: str, problems: Problems) -> Any:
        if not isinstance(value, dict):
            return refuse(problems, where, json.dumps(value), not_object or "must be an object")
        count = len(problems)
        known_keys(value, set(fields), where, problems)
        values = {}
        for key, spec in fields.items():
            at = f"{where}.{key}"
            if key not in value:
                if spec.required:
                    refuse(problems, at, json.dumps(value.get(key)), spec.required)
                values[key] = spec.default
                continue
            values[key] = spec.check(value[key], at, problems)
        if len(problems) > count:
            return INVALID
        return build(**values)

    return check


def known_keys(value: dict, accepted: set, where: str, problems: Problems) -> bool:
    unknown = sorted(set(value) - accepted)
    if unknown:
        refuse(problems, where, json.dumps(value), f"has unknown keys {unknown}; accepted: {sorted(accepted)}")
    return not unknown


# ---- names ---------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def dns_label(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(_DNS_LABEL.fullmatch(value))


def hostname_problem(value: str) -> str | None:
    """Why `value` is not a lowercase DNS name (RFC 1123), or None."""
    if not value:
        return "is empty"
    if value.endswith("."):
        return "ends with a dot"
    if len(value) > 253:
        return "is longer than 253 characters"
    for label in value.split("."):
        if len(label) > 63:
            return f"has the label {label!r} longer than 63 characters"
        if not _DNS_LABEL.fullmatch(label):
            return (
                f"has the label {label!r}; labels are lower-case letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
    return None


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def machine(host: str) -> str:
    """One spelling per machine: DNS names in lower case, addresses in canonical form
    (an IPv4 address written as IPv6, ::ffff:a.b.c.d, is that IPv4 address)."""
    if is_ip(host):
        address = ipaddress.ip_address(host)
        mapped = getattr(address, "ipv4_mapped", None)
        return str(mapped or address)
    return host.lower()


# An OpenSSH public key line, as `ssh-keyscan` prints after the host name.
HOST_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")


def host_key(value: Any, where: str, problems: Problems) -> Any:
    """An OpenSSH public key line (`ssh-keyscan -t ed25519 HOST`, without the host name)."""
    fields = value.split() if isinstance(value, str) else []
    try:
        # The blob is SSH wire format: a length-prefixed key type, which must match the first field.
        blob = base64.b64decode(fields[1], validate=True)
        length = int.from_bytes(blob[:4], "big")
        assert fields[0] in HOST_KEY_TYPES and blob[4 : 4 + length].decode() == fields[0] and len(blob) > 4 + length
    except Exception:
        return refuse(
            problems,
            where,
            json.dumps(value),
            "must be the node's SSH host key as `ssh-keyscan -t ed25519 <host>` "
            'prints it after the host name, such as "ssh-ed25519 AAAAC3Nza..."',
        )
    return value


def ssh_port(value: Any, where: str, problems: Problems) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return refuse(problems, where, json.dumps(value), "must be between 1 and 65535")
    return value


def ssh_user(value: Any, where: str, problems: Problems) -> Any:
    if not isinstance(value, str) or not value or ":" in value or any(c.isspace() for c in value):
        return refuse(problems, where, json.dumps(value), "must be a user name without ':' or whitespace")
    return value
