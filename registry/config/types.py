"""The values the settings hold beyond plain text and numbers: what the components take."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import pulumi

# Re-exported: components take it from here, not from the checks.
from .validators import is_ip as is_ip


class SettingsError(pulumi.RunError):
    """One or more config values are wrong, or do not fit the cluster; the message
    lists every one (pulumi.RunError prints it without a traceback)."""


class TrustMode(StrEnum):
    """How nodes come to trust the registry (registry:nodeTrust)."""

    # Over SSH, to each node of registry:nodes (registry/node_trust.py).
    SSH = "ssh"
    # A DaemonSet on every node, present and future (registry/cluster_trust.py).
    CLUSTER = "cluster"


@dataclass(frozen=True)
class Node:
    name: str
    host: str
    port: int
    user: str
    runtime: str
    # The node's SSH host key (OpenSSH public key line); None: not checked.
    host_key: str | None = None

    @property
    def is_ip(self) -> bool:
        return is_ip(self.host)


@dataclass(frozen=True)
class Bastion:
    """A jump host the node connections go through (registry:sshBastion)."""

    host: str
    port: int
    user: str
    host_key: str | None = None


@dataclass(frozen=True)
class S3:
    """Object storage for the registry's data (the registry's s3 storage driver)."""

    bucket: str
    region: str
    endpoint: str | None
    force_path_style: bool
    root_directory: str | None
    redirect: bool
    # With it, the secret key is in Settings.s3_secret_access_key; without
    # both, the pod's own cloud identity is used.
    access_key_id: str | None


@dataclass(frozen=True)
class KubeAccess:
    """How pulumi-kubernetes reaches the cluster (its own `kubernetes:` config), for
    registry/cluster/ to read the same cluster."""

    # A path, or the kubeconfig's text (it may hold credentials: never printed).
    kubeconfig: str | None = field(default=None, repr=False)
    context: str | None = None
    # kubernetes:cluster: the kubeconfig cluster to use instead of the context's.
    cluster: str | None = None


def url_host(host: str) -> str:
    """A host as it goes before `:port` in an address: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host
