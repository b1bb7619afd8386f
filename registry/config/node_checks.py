"""Checks of the SSH path's entries: registry:nodes (every entry, names and machines
unique) and registry:bastion. Messages name the key, show the value and say what is accepted."""

from __future__ import annotations

import json
import re
from typing import Any

from .validators import (
    Field,
    Problems,
    failed,
    host_key,
    hostname_problem,
    is_ip,
    json_list,
    machine,
    matches,
    obj,
    one_of,
    refuse,
    ssh_port,
    ssh_user,
    text,
)

RUNTIMES = ("auto", "docker", "containerd", "crio", "k3s")
_NODE_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")


def _node_host(value: Any, where: str, problems: Problems) -> Any:
    if not isinstance(value, str) or not value:
        return refuse(problems, where, json.dumps(value), NODE_HOST_REQUIRED)
    if not is_ip(value) and hostname_problem(value.lower()):
        return refuse(problems, where, repr(value), "is neither an IP address nor a DNS name")
    return value


def _bastion_host(value: Any, where: str, problems: Problems) -> Any:
    if not isinstance(value, str) or not value or (not is_ip(value) and hostname_problem(value.lower())):
        return refuse(problems, where, json.dumps(value), BASTION_HOST_REQUIRED)
    return value


NODE_NAME = "must be a name of letters, digits, '.', '_' or '-'"
NODE_HOST_REQUIRED = "is required: the node's IP address or DNS name for SSH"
BASTION_HOST_REQUIRED = "is required: the jump host's IP address or DNS name"

# A node entry, as a dict of its fields. `user` stays "" when not given:
# registry/config/rules.py gives it registry:sshUser.
NODE_FIELDS = obj(
    {
        "name": Field(matches(_NODE_NAME.pattern, NODE_NAME, json.dumps), required=NODE_NAME),
        "host": Field(_node_host, required=NODE_HOST_REQUIRED),
        "port": Field(ssh_port, 22),
        "user": Field(ssh_user, ""),
        "runtime": Field(one_of(*RUNTIMES, show=json.dumps), "auto"),
        "hostKey": Field(host_key, None),
    },
    dict,
    not_object="must be an object {name, host, port?, user?, runtime?}",
)


def node_list(raw: Any, where: str, problems: Problems) -> Any:
    """registry:nodes: every entry checked, names and machines unique."""
    entries = json_list(text)(raw, where, problems)
    if failed(entries):
        return entries
    nodes: list[dict] = []
    names: set[str] = set()
    hosts: set[str] = set()
    for index, entry in enumerate(entries):
        at = f"{where}[{index}]"
        node = NODE_FIELDS(entry, at, problems)
        if not isinstance(entry, dict):
            continue
        name, host = entry.get("name"), entry.get("host")
        if isinstance(name, str) and _NODE_NAME.fullmatch(name) and name in names:
            node = refuse(problems, f"{at}.name", repr(name), "is used by another node; node names must be unique")
        if (
            isinstance(host, str)
            and host
            and (is_ip(host) or not hostname_problem(host.lower()))
            and machine(host) in hosts
        ):
            node = refuse(
                problems,
                f"{at}.host",
                repr(host),
                "is the same machine as another node's host; node hosts must be unique",
            )
        if isinstance(name, str):
            names.add(name)
        if isinstance(host, str) and host:
            hosts.add(machine(host))
        if not failed(node):
            nodes.append(node)
    return tuple(nodes)


BASTION_FIELDS = obj(
    {
        "host": Field(_bastion_host, required=BASTION_HOST_REQUIRED),
        "port": Field(ssh_port, 22),
        "user": Field(ssh_user, ""),
        "hostKey": Field(host_key, None),
    },
    dict,
)
