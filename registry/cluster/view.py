"""The few reads of the cluster that the checks before `pulumi up` need.

A ClusterView answers them: KubernetesView (registry/cluster/kubernetes.py)
from the API server, the unit tests' fakes from memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class CannotRead(Exception):
    """The cluster could not be read (not: the object does not exist)."""


class ClusterView(Protocol):
    """The few reads the checks need. `None` means: the object does not exist."""

    def namespace_labels(self, name: str) -> dict[str, str] | None: ...

    def account_pull_secrets(self, namespace: str) -> list[str] | None: ...

    def object_labels(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        """The labels of a Secret, ConfigMap or PersistentVolumeClaim (`kind`)."""
        ...

    def storage_classes(self) -> dict[str, bool]:
        """Every StorageClass, by name: whether it is the cluster's default."""
        ...

    def unprovisioned_classes(self) -> set[str]:
        """The StorageClasses no provisioner makes volumes for (kubernetes.io/no-provisioner)."""
        ...

    def available_volumes(self, storage_class: str) -> list[str]:
        """The capacities of the Available PersistentVolumes of that class a ReadWriteOnce claim can bind."""
        ...

    def services(self) -> list[ServiceView]:
        """Every Service in the cluster."""
        ...

    def node_names(self, label_selector: str = "") -> list[str]:
        """The names of the cluster's nodes (that match the selector)."""
        ...

    def node_addresses(self) -> dict[str, str]:
        """Each node's first InternalIP, as its status reports it, by node name."""
        ...

    def service_ranges(self) -> list[str] | None:
        """The cluster's Service IP ranges (ServiceCIDR objects, Kubernetes 1.33+); None: not served."""
        ...

    def not_ready_nodes(self) -> list[str]:
        """The nodes whose Ready condition is not True (down, or cut off)."""
        ...

    def daemon_set_being_deleted(self, namespace: str, name: str) -> bool:
        """Whether that DaemonSet exists and carries a deletionTimestamp."""
        ...

    def secret(self, namespace: str, name: str) -> tuple[str, dict[str, str]] | None:
        """A Secret's type and its data, decoded."""
        ...


@dataclass(frozen=True)
class ServiceView:
    namespace: str
    name: str
    cluster_ips: tuple[str, ...]
    node_ports: tuple[int, ...]
    labels: dict[str, str] = field(default_factory=dict)
