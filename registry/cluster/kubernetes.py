"""The cluster as pulumi-kubernetes reaches it: the same kubeconfig, merged as
client-go merges it, the same context, and short timeouts with no retry."""

from __future__ import annotations

import base64
import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from ..config.model import KubeAccess, Settings
from .view import CannotRead, ClusterView, ServiceView

# Seconds to connect to the API server, and to wait for each answer, with no retry:
# a first `pulumi preview` must not hang on a dead cluster (the client's own retries
# made one wait 89 s).
CONNECT_TIMEOUT = 3
READ_TIMEOUT = 5
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
NO_PROVISIONER = "kubernetes.io/no-provisioner"


def unreachable(server: str, error: Exception) -> str:
    """Why the API server at `server` gave no answer, in one line a user can act on."""
    from urllib3 import exceptions

    reason = getattr(error, "reason", None) or error
    if isinstance(reason, exceptions.ConnectTimeoutError):
        return f"the API server at {server} did not accept a connection within {CONNECT_TIMEOUT} s"
    if isinstance(reason, exceptions.ReadTimeoutError | TimeoutError):
        return f"the API server at {server} did not answer within {READ_TIMEOUT} s"
    if isinstance(reason, exceptions.NewConnectionError | ConnectionRefusedError):
        return f"nothing answers at {server} (connection refused)"
    if isinstance(reason, exceptions.SSLError):
        return f"the API server at {server} failed TLS: {str(reason).splitlines()[0][:200]}"
    return f"{server}: {type(reason).__name__}: {str(reason).splitlines()[0][:200] if str(reason) else ''}"


class Unreachable:
    """A cluster that could not be reached: every read says why."""

    def __init__(self, reason: str):
        self.reason = reason

    def __getattr__(self, read: str):
        raise CannotRead(self.reason)


def connect(settings: Settings) -> ClusterView:
    """The cluster pulumi-kubernetes deploys to, with its kubeconfig and context
    (the tests' mocks put a cluster of their own here)."""
    try:
        return KubernetesView.reaching(settings.kube)
    except CannotRead as reason:
        return cast(ClusterView, Unreachable(str(reason)))


class KubernetesView:
    """The reads, through the Kubernetes API, with pulumi-kubernetes' kubeconfig and context."""

    def __init__(self, api_client):
        from kubernetes import client

        self.server = api_client.configuration.host
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._storage = client.StorageV1Api(api_client)
        self._networking = client.NetworkingV1Api(api_client)

    @classmethod
    def reaching(cls, access: KubeAccess) -> KubernetesView:
        from kubernetes import config as kube_config
        from kubernetes.client import ApiClient, Configuration

        try:
            merged = merged_kubeconfig(access, os.environ)
            configuration = Configuration()
            if merged is None:
                try:
                    kube_config.load_incluster_config(client_configuration=configuration)
                except kube_config.ConfigException:
                    raise CannotRead(
                        "no kubeconfig (kubernetes:kubeconfig, $KUBECONFIG or ~/.kube/config), "
                        "and not running in a cluster"
                    ) from None
            else:
                kube_config.load_kube_config_from_dict(
                    merged, context=access.context, client_configuration=configuration
                )
            # One try per read: the timeouts bound it (urllib3 would retry three times).
            configuration.retries = False  # pyright: ignore[reportAttributeAccessIssue]  (set in __init__, not declared)
            return cls(ApiClient(configuration))
        except CannotRead:
            raise
        except Exception as error:  # a kubeconfig that does not load is pulumi-kubernetes' to report
            raise CannotRead(f"kubeconfig: {error}".splitlines()[0]) from None

    def _read(self, call, *args, **kwargs) -> Any:
        """The API's answer (a kubernetes client model), or None for 404."""
        from kubernetes.client.exceptions import ApiException

        try:
            return call(*args, _request_timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), **kwargs)
        except ApiException as error:
            if error.status == 404:
                return None
            raise CannotRead(f"{error.status} {error.reason}") from None
        except Exception as error:  # connection refused, timeout, TLS
            raise CannotRead(unreachable(self.server, error)) from None

    def namespace_labels(self, name: str) -> dict[str, str] | None:
        namespace = self._read(self._core.read_namespace, name)
        return None if namespace is None else dict(namespace.metadata.labels or {})

    def account_pull_secrets(self, namespace: str) -> list[str] | None:
        account = self._read(self._core.read_namespaced_service_account, "default", namespace)
        return None if account is None else [ref.name for ref in account.image_pull_secrets or []]

    def object_labels(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        read = {
            "Secret": self._core.read_namespaced_secret,
            "ConfigMap": self._core.read_namespaced_config_map,
            "PersistentVolumeClaim": self._core.read_namespaced_persistent_volume_claim,
        }[kind]
        found = self._read(read, name, namespace)
        return None if found is None else dict(found.metadata.labels or {})

    def secret(self, namespace: str, name: str) -> tuple[str, dict[str, str]] | None:
        secret = self._read(self._core.read_namespaced_secret, name, namespace)
        if secret is None:
            return None
        data = {key: base64.b64decode(value).decode(errors="replace") for key, value in (secret.data or {}).items()}
        return secret.type, data

    def services(self) -> list[ServiceView]:
        found = self._read(self._core.list_service_for_all_namespaces)
        return [
            ServiceView(
                namespace=item.metadata.namespace,
                name=item.metadata.name,
                cluster_ips=tuple(item.spec.cluster_i_ps or ([item.spec.cluster_ip] if item.spec.cluster_ip else [])),
                node_ports=tuple(port.node_port for port in item.spec.ports or [] if port.node_port),
                labels=dict(item.metadata.labels or {}),
            )
            for item in found.items
        ]

    def node_names(self, label_selector: str = "") -> list[str]:
        found = self._read(self._core.list_node, label_selector=label_selector)
        return [item.metadata.name for item in found.items]

    def node_addresses(self) -> dict[str, str]:
        found = self._read(self._core.list_node)
        # The first InternalIP of each node (a dual-stack node has two).
        firsts = {
            item.metadata.name: next((a.address for a in item.status.addresses or [] if a.type == "InternalIP"), None)
            for item in found.items
        }
        return {name: address for name, address in firsts.items() if address}

    def not_ready_nodes(self) -> list[str]:
        found = self._read(self._core.list_node)
        ready = {
            item.metadata.name
            for item in found.items
            if any(c.type == "Ready" and c.status == "True" for c in (item.status.conditions or []))
        }
        return sorted(item.metadata.name for item in found.items if item.metadata.name not in ready)

    def daemon_set_being_deleted(self, namespace: str, name: str) -> bool:
        found = self._read(self._apps.read_namespaced_daemon_set, name, namespace)
        return found is not None and found.metadata.deletion_timestamp is not None

    def service_ranges(self) -> list[str] | None:
        found = self._read(self._networking.list_service_cidr)
        if found is None:
            return None
        return [cidr for item in found.items for cidr in item.spec.cidrs or []]

    def storage_classes(self) -> dict[str, bool]:
        classes = self._read(self._storage.list_storage_class)
        return {
            item.metadata.name: (item.metadata.annotations or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
            for item in classes.items
        }

    def unprovisioned_classes(self) -> set[str]:
        classes = self._read(self._storage.list_storage_class)
        return {item.metadata.name for item in classes.items if item.provisioner == NO_PROVISIONER}

    def available_volumes(self, storage_class: str) -> list[str]:
        volumes = self._read(self._core.list_persistent_volume)
        return [
            (item.spec.capacity or {}).get("storage", "0")
            for item in volumes.items
            if item.spec.storage_class_name == storage_class
            and (item.status.phase if item.status else None) == "Available"
            and "ReadWriteOnce" in (item.spec.access_modes or [])
        ]


# Fields of a kubeconfig that name files, which client-go resolves against the
# folder of the file that holds them.
_FILE_FIELDS = {"clusters": ("certificate-authority",), "users": ("client-certificate", "client-key", "tokenFile")}


def merged_kubeconfig(access: KubeAccess, environ: Mapping[str, str]) -> dict | None:
    """The kubeconfig pulumi-kubernetes reads, as one document, or None (then in-cluster).

    pulumi-kubernetes loads it with client-go's rules, as kubectl does:
    kubernetes:kubeconfig (a path or the text), else every file of $KUBECONFIG
    in order, else ~/.kube/config; merged so that the first file to name a
    cluster, user or context wins, and so does the first current-context (the
    Python client's own merge takes the last). kubernetes:cluster replaces the
    chosen context's cluster.
    """
    import yaml

    documents: list[tuple[dict, Path | None]] = []
    if access.kubeconfig and os.path.isfile(os.path.expanduser(access.kubeconfig)):
        path = Path(os.path.abspath(os.path.expanduser(access.kubeconfig)))
        documents.append((yaml.safe_load(path.read_text()) or {}, path.parent))
    elif access.kubeconfig:
        documents.append((yaml.safe_load(access.kubeconfig) or {}, None))
    else:
        listed = environ.get("KUBECONFIG")
        paths = [p for p in listed.split(os.pathsep) if p] if listed else [os.path.expanduser("~/.kube/config")]
        for name in paths:
            path = Path(os.path.abspath(name))
            if path.is_file():
                documents.append((yaml.safe_load(path.read_text()) or {}, path.parent))
        if not documents:
            return None
    merged: dict = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}
    for document, folder in documents:
        if not isinstance(document, dict):
            raise ValueError("a kubeconfig is not a YAML mapping")
        if document.get("current-context") and not merged.get("current-context"):
            merged["current-context"] = document["current-context"]
        for section in ("clusters", "users", "contexts"):
            known = {entry["name"] for entry in merged[section]}
            for entry in document.get(section) or []:
                if entry.get("name") in known:
                    continue
                entry = copy.deepcopy(entry)
                inner = entry.get(section[:-1]) or {}
                for key in _FILE_FIELDS.get(section, ()):
                    if folder is not None and inner.get(key) and not os.path.isabs(inner[key]):
                        inner[key] = str(folder / inner[key])
                plugin = inner.get("exec") if section == "users" else None
                # An exec command with a path separator is a file beside the kubeconfig;
                # one without is looked up on PATH (client-go's GetAuthInfoFileReferences).
                if isinstance(plugin, dict) and folder is not None:
                    command = plugin.get("command") or ""
                    if "/" in command and not os.path.isabs(command):
                        plugin["command"] = str(folder / command)
                merged[section].append(entry)
                known.add(entry["name"])
    if access.cluster:
        chosen = access.context or merged.get("current-context")
        for entry in merged["contexts"]:
            if entry.get("name") == chosen:
                entry.setdefault("context", {})["cluster"] = access.cluster
    return merged
