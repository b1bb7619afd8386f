"""Checks of single config keys: names, quantities, schedules, and the shapes
of the objects (S3, scheduling); the nodes' and the bastion's are node_checks.py. Each is a
validators.Check; registry/config/{service,storage,nodes,tls}.py name one for each key. Messages name
the key, show the value and say what is accepted."""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

from .validators import (
    INVALID,
    Check,
    Field,
    Problems,
    dns_label,
    hostname_problem,
    matches,
    obj,
    refuse,
)

_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")
# S3's bucket naming rules, the part every S3 API enforces.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")
_CPU = re.compile(r"([0-9]+(\.[0-9]+)?|[0-9]+m)")
# A label key: an optional DNS-subdomain prefix and a name of up to 63 characters.
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
_AFFINITY_KEYS = {"nodeAffinity", "podAffinity", "podAntiAffinity"}
_CRON_FIELD = re.compile(r"[0-9A-Za-z*/,?-]+")
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# Namespaces the cluster itself owns: the program creates its namespace and
# deletes it on destroy, which these must never be.
CLUSTER_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
# Names every node's /etc/hosts already gives to the node itself.
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
# The CA's common name is "<hostname> registry CA", and a common name holds at most 64 characters.
MAX_HOSTNAME = 64 - len(" registry CA")


# An image reference as distribution's reference package reads one:
# [domain[:port]/]path[:tag][@sha256:digest].
_DOMAIN = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?"
)


def is_pinned(image: str) -> bool:
    """Whether the reference names its image by digest: a tag can be pushed again."""
    return "@sha256:" in image


# ---- checks of single keys --------------------------------------------------------


def image_reference(example: str) -> Check:
    def check(value: Any, where: str, problems: Problems) -> Any:
        if not isinstance(value, str) or not _IMAGE.fullmatch(value):
            return refuse(
                problems,
                where,
                repr(value),
                f"must be an image reference such as {example}: a lower-case name, a tag, and "
                "@sha256: with the 64 hex digits of its digest to pin it",
            )
        return value

    return check


def registry_hostname(value: Any, where: str, problems: Problems) -> Any:
    problem = hostname_problem(value)
    if not problem and (value in LOCAL_NAMES or value.endswith(".localhost")):
        problem = "already names the node itself in every node's /etc/hosts"
    if not problem and len(value) > MAX_HOSTNAME:
        problem = (
            f"is {len(value)} characters; at most {MAX_HOSTNAME} fit, so that "
            "'<hostname> registry CA' fits the 64 characters of a certificate's common name"
        )
    if problem:
        return refuse(problems, where, repr(value), f"{problem}; expected a lower-case DNS name such as image-registry")
    return value


def storage_class(value: Any, where: str, problems: Problems) -> Any:
    problem = hostname_problem(value)
    if problem:
        return refuse(problems, where, repr(value), f"{problem}; expected the name of a StorageClass")
    return value


NAMESPACE_NAME = "is not a namespace name: lower-case letters, digits and '-', at most 63"


def own_namespace(value: Any, where: str, problems: Problems) -> Any:
    if not dns_label(value):
        return refuse(problems, where, repr(value), NAMESPACE_NAME)
    if value in CLUSTER_NAMESPACES:
        return refuse(
            problems,
            where,
            repr(value),
            "is a namespace the cluster owns; the program creates its namespace "
            "and deletes it on destroy, so name a new one, such as registry",
        )
    return value


def quantity(value: Any, where: str, problems: Problems) -> Any:
    found = _QUANTITY.fullmatch(value)
    if not found or float(found.group().rstrip("KMGTPEik")) <= 0:
        return refuse(problems, where, repr(value), "is not a positive Kubernetes quantity such as 10Gi or 500Mi")
    return value


def user(value: Any, where: str, problems: Problems) -> Any:
    if not isinstance(value, str) or not value:
        return refuse(problems, where, json.dumps(value), "must be a non-empty string")
    # htpasswd reads ':' as the separator and skips a line that starts with '#'
    # (a comment): such a user would exist in the config and never log in.
    if ":" in value or value.startswith("#") or not value.isprintable() or any(c.isspace() for c in value):
        return refuse(
            problems,
            where,
            repr(value),
            "must be printable and must not contain ':' or whitespace, nor start with '#' "
            "(htpasswd uses ':' as separator and reads a line starting with '#' as a comment)",
        )
    return value


def namespace_name(value: Any, where: str, problems: Problems) -> Any:
    return value if dns_label(value) else refuse(problems, where, json.dumps(value), NAMESPACE_NAME)


def cron(raw: Any, where: str, problems: Problems) -> Any:
    """A CronJob schedule: five fields or a macro; "" for none."""
    value = str(raw).strip()
    if value == "":
        return None
    fields = value.split()
    if not (value in _CRON_MACROS or (len(fields) == 5 and all(_CRON_FIELD.fullmatch(f) for f in fields))):
        return refuse(
            problems,
            where,
            repr(raw),
            'is not a cron schedule: five fields such as "0 3 * * 0", a macro such as @weekly, or "" for none',
        )
    return value


def secret_reference(raw: Any, where: str, problems: Problems) -> Any:
    """`<namespace>/<name>` of a Secret."""
    namespace, _, name = raw.partition("/")
    if not (dns_label(namespace) and hostname_problem(name) is None):
        return refuse(
            problems, where, repr(raw), "is not <namespace>/<name> of a Secret, such as cert-manager/registry-tls"
        )
    return namespace, name


def docker_config(raw: Any, where: str, problems: Problems) -> Any:
    """A .dockerconfigjson document; checked here, kept secret elsewhere (never shown)."""
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not isinstance(value.get("auths"), dict) or not value["auths"]:
        return refuse(
            problems,
            where,
            "(secret, not shown)",
            "must be a .dockerconfigjson document, "
            '{"auths": {"<registry>": {"auth": "<base64 user:password>"}}}, '
            "such as ~/.docker/config.json after a docker login",
        )
    return raw


def whole(check: Check) -> Check:
    """All or nothing: INVALID when `check` found any problem."""

    def checked(raw: Any, where: str, problems: Problems) -> Any:
        count = len(problems)
        value = check(raw, where, problems)
        return INVALID if len(problems) > count else value

    return checked


def resource_amounts(value: dict, where: str, problems: Problems) -> dict:
    if not value or set(value) - {"requests", "limits"}:
        refuse(problems, where, json.dumps(value), "must have requests and/or limits, and nothing else")
    for part, amounts in value.items():
        if part not in ("requests", "limits"):
            continue
        if not isinstance(amounts, dict) or set(amounts) - set(_RESOURCE_NAMES):
            refuse(
                problems, f"{where}.{part}", json.dumps(amounts), f"must be an object of {', '.join(_RESOURCE_NAMES)}"
            )
            continue
        for name, amount in amounts.items():
            pattern = _CPU if name == "cpu" else _QUANTITY
            if not isinstance(amount, str) or not pattern.fullmatch(amount):
                example = "500m or 2" if name == "cpu" else "512Mi"
                refuse(
                    problems,
                    f"{where}.{part}.{name}",
                    json.dumps(amount),
                    f"is not a Kubernetes quantity such as {example} (give it as a string)",
                )
    return value


def label_map(value: dict, where: str, problems: Problems) -> dict:
    for label, wanted in value.items():
        prefix, _, name = label.rpartition("/")
        if not _LABEL_NAME.fullmatch(name) or (prefix and not _LABEL_PREFIX.fullmatch(prefix)):
            refuse(
                problems,
                where,
                json.dumps(label),
                "has a key that is not a label key, such as kubernetes.io/hostname or disktype",
            )
        if not isinstance(wanted, str) or not _LABEL_VALUE.fullmatch(wanted):
            refuse(
                problems,
                f"{where}.{label}",
                json.dumps(wanted),
                "is not a label value: up to 63 letters, digits, '-', '_' and '.', as a string",
            )
    return value


def toleration(item: Any, where: str, problems: Problems) -> Any:
    if not isinstance(item, dict) or not item or set(item) - _TOLERATION_KEYS:
        return refuse(problems, where, json.dumps(item), f"must be an object of {', '.join(sorted(_TOLERATION_KEYS))}")
    operator = item.get("operator", "Equal")
    if operator not in ("Equal", "Exists"):
        refuse(problems, f"{where}.operator", json.dumps(operator), "must be Equal or Exists")
    if operator == "Exists" and item.get("value"):
        refuse(problems, f"{where}.value", json.dumps(item["value"]), "must be empty with operator Exists")
    if "key" not in item and operator != "Exists":
        refuse(problems, where, json.dumps(item), "needs a key, or operator Exists to tolerate every taint")
    for name in ("key", "value"):
        if name in item and not isinstance(item[name], str):
            refuse(problems, f"{where}.{name}", json.dumps(item[name]), "must be a string")
    if item.get("effect", "") not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute"):
        refuse(
            problems, f"{where}.effect", json.dumps(item["effect"]), "must be NoSchedule, PreferNoSchedule or NoExecute"
        )
    seconds = item.get("tolerationSeconds")
    if seconds is not None and (
        not isinstance(seconds, int) or isinstance(seconds, bool) or item.get("effect") != "NoExecute"
    ):
        refuse(
            problems,
            f"{where}.tolerationSeconds",
            json.dumps(seconds),
            "must be a whole number of seconds, with effect NoExecute",
        )
    return item


def affinity_shape(value: dict, where: str, problems: Problems) -> Any:
    if not value or set(value) - _AFFINITY_KEYS or not all(isinstance(v, dict) for v in value.values()):
        return refuse(
            problems,
            where,
            json.dumps(value),
            f"must be an object of {', '.join(sorted(_AFFINITY_KEYS))}, each an object as in a pod spec",
        )
    return value


S3_SHAPE = "{bucket, endpoint, forcePathStyle, redirect, region, rootDirectory}"
_BUCKET_NAME = "is required: a bucket name of 3-63 lower-case letters, digits, '.' and '-'"


def _endpoint(value: Any, where: str, problems: Problems) -> Any:
    try:
        url = urllib.parse.urlsplit(value) if isinstance(value, str) else None
    except ValueError:
        url = None
    # urlsplit drops tabs and newlines itself; the registry would be given them.
    if url is None or url.scheme not in ("http", "https") or not url.hostname or any(c.isspace() for c in value):
        return refuse(
            problems,
            where,
            json.dumps(value),
            "must be an http:// or https:// URL, such as https://minio.example.internal:9000",
        )
    return value


def _flag(value: Any, where: str, problems: Problems) -> Any:
    return value if isinstance(value, bool) else refuse(problems, where, json.dumps(value), "must be true or false")


S3_FIELDS = obj(
    {
        "bucket": Field(matches(_BUCKET.pattern, _BUCKET_NAME, json.dumps), required=_BUCKET_NAME),
        "endpoint": Field(_endpoint, None),
        "region": Field(matches(r"\S+", "must be a region name such as us-east-1", json.dumps), "us-east-1"),
        "rootDirectory": Field(
            matches(r"/\S*", "must be a path starting with '/', such as /registry", json.dumps), None
        ),
        # Path style by default with an endpoint of the user's (MinIO, SeaweedFS...), not on AWS.
        "forcePathStyle": Field(_flag, None),
        "redirect": Field(_flag, False),
    },
    dict,
)
