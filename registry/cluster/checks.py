"""What the program checks in the cluster before it creates anything.

The config alone cannot say whether a listed namespace exists, or whether the
registry's namespace is someone else's. Found out by `pulumi up`, either
leaves the stack half-applied: pull secrets in the namespaces that exist, and
no registry. So the program reads the cluster first, with the same kubeconfig
and context as pulumi-kubernetes, and refuses with one message, naming every
problem and how to mend it, before it registers a single resource.

It also reads the certificate of `tlsSecret`, the user's kubernetes.io/tls
Secret, which the program serves instead of one of its own.

A cluster it cannot read (no kubeconfig, unreachable, no permission to read
namespaces) is not a reason to refuse: the check is skipped with a warning,
and pulumi-kubernetes reports its own error if it cannot reach it either.
Only `tlsSecret` needs the read, and is refused without it.
"""

from __future__ import annotations

import dataclasses
import ipaddress

import pulumi

from ..config.model import Settings
from ..config.types import SettingsError, TrustMode
from ..config.validators import is_ip
from ..names import (
    CA_GENERATION_LABEL,
    DATA_CLAIM,
    DISCOVERY_CONFIGMAP,
    DISCOVERY_NAMESPACE,
    HOSTNAME_LABEL,
    MANAGED_BY,
    NODE_TRUST_NAME,
    PULL_SECRET_NAME,
    SERVICE_NAME,
    STACK_LABEL,
    TLS_SECRET,
    node_trust_namespace,
    owned_labels,
    stack_label_value,
)
from ..trust_pod import ROLLOUT_TIMEOUT_SECONDS
from .certificate import _unreadable_tls_secret, read_tls_secret
from .view import CannotRead, ClusterView


def own_namespace_labels(settings: Settings) -> dict[str, str]:
    """The labels that mark the registry's namespace as this program's."""
    return {**owned_labels(settings.hostname), MANAGED_BY[0]: MANAGED_BY[1]}


def _ours(found: dict[str, str]) -> bool:
    """Labels of an object this stack made (its namespace, its Service): whatever its
    hostname, which may change. One made before objects carried the stack (no
    STACK_LABEL) counts as this stack's."""
    made_by_us = found.get(MANAGED_BY[0]) == MANAGED_BY[1] and found.get("app.kubernetes.io/name") == "registry"
    return made_by_us and found.get(STACK_LABEL, stack_label_value()) == stack_label_value()


def _someone_elses(found: dict[str, str] | None) -> bool:
    """An object that exists and that no Pulumi program created."""
    return found is not None and found.get(MANAGED_BY[0]) != MANAGED_BY[1]


def cluster_problems(settings: Settings, cluster: ClusterView) -> tuple[list[str], list[str]]:
    """(problems that stop the program, warnings) for these settings in this cluster.

    A check whose read fails is skipped with a warning; the first read failing
    (nothing could be read) raises CannotRead.
    """
    problems: list[str] = []
    warnings: list[str] = []
    problems += _registry_namespace(settings, cluster)
    problems += _node_trust_namespace(settings, cluster)
    checks = (
        ("the node-trust DaemonSet", _node_trust_daemon_set),
        ("the pull-secret namespaces", _pull_secret_namespaces),
        ("the discovery ConfigMap", _discovery),
        ("the storage class", _storage_class),
        ("the storage node", _storage_node),
        ("the Service's address and port", _service_address),
        ("the CA generation in use", _ca_generation),
    )
    for what, check in checks:
        try:
            problems += check(settings, cluster)
        except CannotRead as reason:
            warnings.append(f"could not check {what} ({reason}); going on")
    try:
        warnings += _nodes_behind(settings, cluster)
    except CannotRead as reason:
        warnings.append(f"could not check which nodes are ready ({reason}); going on")
    return problems, warnings


def _registry_namespace(settings: Settings, cluster: ClusterView) -> list[str]:
    existing = cluster.namespace_labels(settings.namespace)
    if existing is None or _ours(existing):
        return []
    mine = own_namespace_labels(settings)
    return [
        f"registry:namespace is {settings.namespace!r}, a namespace that already exists and that this program "
        f"did not create (it lacks the labels {', '.join(f'{k}={v}' for k, v in mine.items())}). The program "
        "creates its own namespace and deletes it, with everything in it, on destroy; choose a name that does "
        "not exist yet"
    ]


def _node_trust_namespace(settings: Settings, cluster: ClusterView) -> list[str]:
    if settings.node_trust is not TrustMode.CLUSTER:
        return []
    name = node_trust_namespace(settings.namespace)
    existing = cluster.namespace_labels(name)
    if existing is None or _ours(existing):
        return []
    return [
        f"registry:nodeTrust is cluster, and the namespace its DaemonSet needs, {name!r}, already exists and is "
        "not this stack's; the program creates it and deletes it on destroy: remove it, or choose another "
        "registry:namespace"
    ]


def _node_trust_daemon_set(settings: Settings, cluster: ClusterView) -> list[str]:
    # A destroy that failed on a node that was down leaves the DaemonSet being deleted:
    # an up now would report success while every node is given back as soon as it can be.
    if settings.node_trust is not TrustMode.CLUSTER:
        return []
    namespace = node_trust_namespace(settings.namespace)
    if not cluster.daemon_set_being_deleted(namespace, NODE_TRUST_NAME):
        return []
    down = cluster.not_ready_nodes()
    held = f" (held by the node(s) that are not ready: {', '.join(down)})" if down else ""
    return [
        f"registry:nodeTrust is cluster, and its DaemonSet {namespace}/{NODE_TRUST_NAME} is still being deleted by "
        f"a pulumi destroy that did not finish{held}: its pods are giving every node back. Let it finish first: "
        "bring those nodes back, or kubectl delete node <name> for one that is gone for good, and wait until "
        f"kubectl -n {namespace} get daemonset {NODE_TRUST_NAME} finds none; then run pulumi destroy again, or "
        "pulumi up to make it anew"
    ]


def _nodes_behind(settings: Settings, cluster: ClusterView) -> list[str]:
    """With nodeTrust cluster, the nodes that cannot take a change now: named before up waits for them."""
    if settings.node_trust is not TrustMode.CLUSTER:
        return []
    return [
        f"node {node} is not Ready: its node-trust pod cannot take a change of this run (a CA rotation, say) "
        f"until the node is back, and pulumi up then waits for it up to {ROLLOUT_TIMEOUT_SECONDS // 60} minutes "
        "before it fails; every other node takes the change meanwhile. Bring the node back, or, if it is gone for "
        f"good, kubectl delete node {node}"
        for node in cluster.not_ready_nodes()
    ]


def with_node_addresses(settings: Settings, cluster: ClusterView) -> Settings:
    """nodeTrust cluster with no `nodes`: a workstation reaches the node port on the
    cluster's nodes, by the InternalIP `kubectl get nodes -o wide` shows; they are
    the external endpoints and in the server certificate."""
    if settings.node_trust is not TrustMode.CLUSTER or settings.nodes or not settings.cluster_check:
        return settings
    try:
        reported = cluster.node_addresses()
    except CannotRead as reason:
        pulumi.log.warn(f"could not read the nodes' addresses ({reason}); no external endpoint")
        return settings
    addresses = []
    for node, address in sorted(reported.items()):
        # A kubelet writes its own Node's status, and the API server takes any text
        # as an address: only an IP address goes into the certificate and commands.
        if is_ip(address):
            addresses.append(str(ipaddress.ip_address(address)))
        else:
            pulumi.log.warn(
                f"node {node} reports the InternalIP {address!r}, which is not an IP address: it is left out of "
                "externalEndpoints and the server certificate"
            )
    if not addresses:
        pulumi.log.warn(
            "no node of the cluster reports an InternalIP, so externalEndpoints is empty and a workstation has no "
            f"address to reach the node port {settings.node_port} by; list registry:nodes with the addresses a "
            "workstation reaches them by (kubectl get nodes -o wide)"
        )
    return dataclasses.replace(settings, cluster_node_hosts=tuple(addresses))


def _pull_secret_namespaces(settings: Settings, cluster: ClusterView) -> list[str]:
    problems = []
    for namespace in settings.pull_secret_namespaces:
        if namespace == settings.namespace:
            continue  # the program creates it
        if cluster.namespace_labels(namespace) is None:
            problems.append(
                f"registry:pullSecretNamespaces lists {namespace!r}, a namespace that does not exist; the program "
                f"does not create namespaces it does not own. Create it first (kubectl create namespace {namespace}), "
                "or take it off the list"
            )
            continue
        if _someone_elses(cluster.object_labels("Secret", namespace, PULL_SECRET_NAME)):
            problems.append(
                f"registry:pullSecretNamespaces lists {namespace!r}, which already has a Secret {PULL_SECRET_NAME} "
                "that this program did not create; it is not taken over, since destroy would delete it. Delete it "
                f"if it is a leftover (kubectl -n {namespace} delete secret {PULL_SECRET_NAME}), or take "
                f"{namespace!r} off the list"
            )
        if not settings.service_account_pull_secret:
            continue
        listed = cluster.account_pull_secrets(namespace)
        if listed is None:
            problems.append(
                f"registry:serviceAccountPullSecret is true, but namespace {namespace!r} has no default "
                "ServiceAccount yet (kube-controller-manager makes one for each namespace); run again in a moment"
            )
        elif listed and PULL_SECRET_NAME not in listed:
            # The API server treats imagePullSecrets as one atomic list for
            # server-side apply (tests/engine/test_engine.py saw the conflict): our
            # patch could not add an entry beside these without taking them over.
            problems.append(
                f"registry:serviceAccountPullSecret is true, but the default ServiceAccount of {namespace!r} already "
                f"lists pull secrets ({', '.join(listed)}), a list the program cannot share. Add "
                f"{PULL_SECRET_NAME} to it yourself and list it in the pods, or set serviceAccountPullSecret false"
            )
    return problems


def _discovery(settings: Settings, cluster: ClusterView) -> list[str]:
    if not settings.discovery:
        return []
    where = f"{DISCOVERY_NAMESPACE}/{DISCOVERY_CONFIGMAP}"
    if _someone_elses(cluster.object_labels("ConfigMap", DISCOVERY_NAMESPACE, DISCOVERY_CONFIGMAP)):
        return [
            f"registry:discovery is true, but the ConfigMap {where} already exists and this program did not "
            "create it (kind and minikube make one for their own registry); set registry:discovery false, or "
            f"delete it if it is a leftover (kubectl -n {DISCOVERY_NAMESPACE} delete configmap {DISCOVERY_CONFIGMAP})"
        ]
    return []


def _storage_node(settings: Settings, cluster: ClusterView) -> list[str]:
    # The pod is pinned by this label; on no node, it stays Pending and `up` times out.
    if settings.storage_node is None:
        return []
    name = settings.storage_node.name
    if cluster.node_names(f"{HOSTNAME_LABEL}={name}"):
        return []
    known = ", ".join(sorted(cluster.node_names())) or "none"
    return [
        f"registry:storageNode is {name!r}, and no node of the cluster has the label {HOSTNAME_LABEL}={name} "
        f"(its nodes: {known}); name the nodes entry as kubectl get nodes prints it"
    ]


def _service_address(settings: Settings, cluster: ClusterView) -> list[str]:
    # A taken address or port fails the Service after the namespace and the
    # pull secrets exist; the API server's message does not say who holds it.
    problems = []
    cluster_ip = settings.cluster_ip
    ranges = cluster.service_ranges() if cluster_ip else None
    if cluster_ip and ranges and not any(ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(r) for r in ranges):
        problems.append(
            f"registry:clusterIp {settings.cluster_ip} is outside the cluster's Service range ({', '.join(ranges)}; "
            "kubectl get servicecidr shows it); choose a free address in it, and set registry:serviceCidr to it"
        )
    for service in cluster.services():
        if service.name == SERVICE_NAME and _ours(service.labels):
            # Ours, from an earlier up; in another namespace when `namespace`
            # changes, and then deleted before the new one is made.
            continue
        where = f"{service.namespace}/{service.name}"
        if settings.cluster_ip and settings.cluster_ip in service.cluster_ips:
            problems.append(
                f"registry:clusterIp {settings.cluster_ip} is taken by the Service {where}; choose a "
                "free address in the Service range (kubectl get svc -A lists those in use)"
            )
        if settings.node_port in service.node_ports:
            problems.append(
                f"registry:nodePort {settings.node_port} is taken by the Service {where}; choose a free "
                "port between 30000 and 32767 (kubectl get svc -A lists those in use)"
            )
    return problems


def _ca_generation(settings: Settings, cluster: ClusterView) -> list[str]:
    # A jump makes two new CAs at once: nodes drop the one the pods still serve
    # with before they roll. Going down would make an old generation anew.
    if settings.tls_certificate is not None or settings.tls_secret is not None:
        return []
    found = cluster.object_labels("Secret", settings.namespace, TLS_SECRET)
    in_use = (found or {}).get(CA_GENERATION_LABEL, "")
    if not in_use.isdigit():
        return []  # the first up, or a release before the label
    wanted, current = settings.ca_generation, int(in_use)
    if wanted > current + 1:
        return [
            f"registry:caGeneration is {wanted}, and the registry serves with CA generation {current}: raise it by "
            f"one at a time ({current + 1} first, then pulumi up), so that every node trusts a new CA before the "
            "pods serve with it"
        ]
    if wanted < current:
        return [
            f"registry:caGeneration is {wanted}, below the generation in use ({current}); generations only go up "
            f"(generation {current - 1} and older are gone from the nodes): set it back to {current}, or to "
            f"{current + 1} to rotate"
        ]
    return []


def _storage_class(settings: Settings, cluster: ClusterView) -> list[str]:
    if settings.storage != "pvc":
        return []
    classes = cluster.storage_classes()
    claimed = cluster.object_labels("PersistentVolumeClaim", settings.namespace, DATA_CLAIM) is not None
    if settings.storage_class is not None and settings.storage_class not in classes and not claimed:
        known = ", ".join(sorted(classes)) or "none"
        return [
            f"registry:storageClass is {settings.storage_class!r}, and the cluster has no such StorageClass "
            f"(it has: {known}); name one of those, leave storageClass unset for the default, or use storage node"
        ]
    if settings.storage_class is None and not any(classes.values()):
        if claimed:
            return []  # an earlier up's claim is bound already: nothing to provision
        return [
            "registry:storage is pvc with no storageClass, and the cluster has no default StorageClass "
            "(kubectl get storageclass marks none '(default)'): the claim would wait for a volume and pulumi up "
            "time out. Without a storage provisioner (kubeadm has none) set registry:storage to node, with "
            "registry:storageNode; for PersistentVolumes made by hand, give them a StorageClass and set "
            "registry:storageClass to it"
        ]
    chosen = settings.storage_class or next((name for name, default in classes.items() if default), None)
    if claimed or chosen is None or chosen not in cluster.unprovisioned_classes():
        return []
    # No provisioner makes a volume for this class: only one made by hand can bind the claim.
    wanted = quantity_bytes(settings.storage_size)
    if any(quantity_bytes(size) >= wanted for size in cluster.available_volumes(chosen)):
        return []
    return [
        f"registry:storage is pvc, and the StorageClass {chosen!r} has no provisioner (kubernetes.io/no-provisioner) "
        f"and no Available PersistentVolume of {settings.storage_size} or more that a ReadWriteOnce claim can bind "
        "(kubectl get pv): the claim would wait and pulumi up time out. Make one of that class, lower "
        "registry:storageSize to one there is, or set registry:storage node with registry:storageNode"
    ]


_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}  # fmt: skip


def quantity_bytes(quantity: str) -> float:
    """A Kubernetes storage quantity (10Gi, 500M) in bytes."""
    number = quantity.rstrip("".join(set("".join(_UNITS))))
    return float(number) * _UNITS[quantity[len(number) :]]


def check_cluster(settings: Settings, cluster: ClusterView) -> None:
    """Refuse, before any resource is registered, a config that this cluster would
    half-apply, with every problem at once.

    A cluster that cannot be read is a warning for a preview, and stops `up`:
    pulumi-kubernetes would then create what it can and fail half-way. Where it
    reaches the cluster in a way this check cannot (an auth plugin it cannot
    run), registry:clusterCheck false skips the check, with a warning each run."""
    if not settings.cluster_check:
        pulumi.log.warn(
            "registry:clusterCheck is false: the cluster was not read before creating anything, so nothing of "
            "what docs/configuration.md lists was checked (namespaces, Services, storage, nodes)"
        )
        problems = read_tls_secret(settings, cluster)[0] if settings.tls_secret is not None else []
        if problems:
            raise SettingsError("the cluster does not fit the config; nothing was created:\n  " + "\n  ".join(problems))
        return
    try:
        problems, warnings = cluster_problems(settings, cluster)
        if settings.tls_secret is not None:
            problems += read_tls_secret(settings, cluster)[0]
    except CannotRead as reason:
        if settings.tls_secret is not None:
            raise _unreadable_tls_secret(settings, reason) from None
        if not pulumi.runtime.is_dry_run():
            raise SettingsError(
                f"could not read the cluster to check the config before creating anything ({reason}); nothing "
                "was created. Check that kubectl reaches it with the same kubeconfig and context "
                "(kubectl get namespaces); where pulumi-kubernetes reaches it in a way this check cannot, set "
                "registry:clusterCheck false"
            ) from None
        pulumi.log.warn(
            f"could not read the cluster to check the config before creating anything ({reason}); "
            "pulumi up will stop here unless it can"
        )
        problems, warnings = [], []
    for warning in warnings:
        pulumi.log.warn(warning)
    if problems:
        raise SettingsError("the cluster does not fit the config; nothing was created:\n  " + "\n  ".join(problems))
