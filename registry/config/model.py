"""The settings: one typed field per config key, declared once with `setting()`
(registry/config/keys.py): its key, its check, its default, its line for
Pulumi.yaml and its text for docs/configuration.md. The fields are grouped by
what they are about (service.py, storage.py, nodes.py, tls.py); Settings is
all of them, with what is derived from them.

The rules that tie keys together are registry/config/rules.py; reading them
from Pulumi is registry/config/load.py. Components take these values (and the
types of registry/config/types.py), never the config itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..names import service_dns_names
from .nodes import DEFAULT_NODE_TRUST_IMAGE, NodeSettings
from .service import DEFAULT_GC_SCHEDULE, DEFAULT_IMAGE, DEFAULT_RESOURCES, MAX_CA_GENERATION, ServiceSettings
from .storage import DEFAULT_STORAGE_PATH, MAX_REPLICAS, STORAGES, StorageSettings
from .tls import TlsSettings
from .types import S3, Bastion, KubeAccess, Node, TrustMode, url_host

__all__ = [
    "DEFAULT_GC_SCHEDULE",
    "DEFAULT_IMAGE",
    "DEFAULT_NODE_TRUST_IMAGE",
    "DEFAULT_RESOURCES",
    "DEFAULT_STORAGE_PATH",
    "MAX_CA_GENERATION",
    "MAX_REPLICAS",
    "S3",
    "STORAGES",
    "Bastion",
    "KubeAccess",
    "Node",
    "Settings",
    "TrustMode",
    "distribution_major",
]


@dataclass(frozen=True)
class Settings(TlsSettings, NodeSettings, StorageSettings, ServiceSettings):
    """Every config key's value, checked; in the docs, in the order of the groups, service first."""

    # Not config keys: how pulumi-kubernetes reaches the cluster (its own `kubernetes:`
    # config), and with nodeTrust cluster and no `nodes`, the cluster's nodes' addresses.
    kube: KubeAccess = field(default_factory=KubeAccess)
    cluster_node_hosts: tuple[str, ...] = ()

    @property
    def endpoint(self) -> str:
        return f"{self.hostname}:{self.port}"

    @property
    def cluster_dns_endpoints(self) -> list[str]:
        """The Service's cluster DNS names, as in-cluster builders dial them."""
        return [f"{name}:{self.port}" for name in service_dns_names(self.namespace)]

    @property
    def external_hosts(self) -> list[str]:
        """Where a workstation reaches the node port: the `nodes` entries, else the cluster's nodes."""
        return [node.host for node in self.nodes] or list(self.cluster_node_hosts)

    @property
    def external_endpoints(self) -> list[str]:
        return [f"{url_host(host)}:{self.node_port}" for host in self.external_hosts]

    @property
    def collects(self) -> bool:
        """Whether garbage collection runs: a schedule, on a volume of the pod's own (rules.py refuses one on s3)."""
        return self.gc_schedule is not None

    def __repr__(self) -> str:  # never print the key, even by accident
        return f"Settings(hostname={self.hostname!r}, namespace={self.namespace!r}, nodes={len(self.nodes)})"


def distribution_major(image: str) -> int | None:
    """The registry's major version as the image's tag says it (registry:2.8.3 -> 2),
    or None when the tag does not say (a digest, latest, a tag of the user's)."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    tag = name.split(":", 1)[1] if ":" in name else ""
    found = re.match(r"^v?(\d+)(?:[.-]|$)", tag)
    return int(found.group(1)) if found else None
