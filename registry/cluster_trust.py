"""nodeTrust: cluster — the node program run on every node by a DaemonSet, with no SSH.

The same program and parameters as over SSH (registry/node_script.py) reach
every node, present and future, through a DaemonSet in a namespace of its own
(labelled for the `privileged` Pod Security level, so that the registry's
can enforce `restricted`). Its pods hand the program to the host's root,
mounted by hostPath at /host, through chroot (registry/node/pod.sh, pod specs
in registry/trust_pod.py), until it succeeds; told to stop while the
DaemonSet or its namespace is being deleted, a pod gives its node back before
it exits, whatever its create had done. With storage node, a second
DaemonSet on that node alone does the same for the data folder
(registry/node/storage.sh): its own object, so that nothing that replaces the
trust DaemonSet (a new hostname, port or state format) ever touches the
folder, and it removes the folder only when it is deleted itself.

The pods read their DaemonSet with a Role that allows `get` on those objects
(and in their namespace lists pods and creates events, to name a node that
is behind or down where `pulumi up` and `pulumi destroy` show it), and their
namespace with a ClusterRole that allows `get` on that one namespace.

pulumi-kubernetes deletes with foreground propagation and waits until the
DaemonSet is gone (provider/pkg/await/await.go, Deletion), which is after its
pods are: so `pulumi destroy` returns once every node is given back, or fails
after DELETE_TIMEOUT naming the DaemonSet whose pods could not finish.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from .names import (
    IMAGE_PULL_SECRET,
    NODE_TRUST_NAME,
    NODE_TRUST_RECORD_ANNOTATION,
    node_trust_namespace,
    owned_labels,
    stack_identity,
)
from .node_script import (
    CLUSTER_ENTRY,
    NodeTrustParams,
    StorageParams,
    daemon_files,
    storage_claim,
    storage_daemon_files,
)
from .trust_pod import (
    GRACE_SECONDS,
    ROLLOUT_TIMEOUT_SECONDS,
    STORAGE_GIVE_BACK,
    STORAGE_NAME,
    TOKEN_SECRET,
    TRUST_GIVE_BACK,
    app_labels,
    container,
    daemon_set_spec,
    files_name,
    node_record,
    pod_spec,
)

# How long `pulumi destroy` waits for a DaemonSet (and so for every node) before
# it fails: the grace period, and the time the controllers take to get there.
DELETE_TIMEOUT_SECONDS = GRACE_SECONDS + 60


@dataclass
class ClusterNodeTrustArgs:
    hostname: str
    port: int
    # The registry's namespace; the DaemonSet's is named after it.
    namespace: str
    image: str
    ca_cert_pem: pulumi.Input[str]
    cluster_ip: pulumi.Input[str]
    # storage node: the node whose folder keeps the data, the folder, keepData.
    storage_node: str | None = None
    storage_path: str | None = None
    keep_data: bool = True
    # A .dockerconfigjson for nodeTrustImage (registry:imagePullSecret).
    image_pull_secret: pulumi.Input[str] | None = None


class ClusterNodeTrust(pulumi.ComponentResource):
    daemon_set: k8s.apps.v1.DaemonSet
    # With storage node: the folder's DaemonSet, else None.
    storage: k8s.apps.v1.DaemonSet | None

    def __init__(self, name: str, args: ClusterNodeTrustArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("registry:index:ClusterNodeTrust", name, None, opts)
        self._name, self._args = name, args
        self._ns = node_trust_namespace(args.namespace)
        namespace = self._namespace()
        needed = [namespace, *self._access(namespace)]
        if args.image_pull_secret is not None:
            needed.append(self._image_pull_secret(namespace, args.image_pull_secret))
        self.daemon_set = self._trust(needed)
        self.storage = self._storage(needed) if args.storage_node and args.storage_path else None
        self.register_outputs({})

    def _opts(self, *after: pulumi.Resource, **more) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, depends_on=list(after), **more)

    # Objects' parts are plain data as the API documents it (Any: the SDK's typed
    # dicts add nothing); tests/unit/test_manifests.py checks them against the schemas.
    def _meta(self, name: pulumi.Input[str] = NODE_TRUST_NAME, **more) -> Any:
        return {"name": name, "namespace": self._ns, "labels": app_labels(NODE_TRUST_NAME, self._args.hostname), **more}

    def _namespace(self) -> k8s.core.v1.Namespace:
        metadata: Any = {
            "name": self._ns,
            "labels": {
                **owned_labels(self._args.hostname),
                # hostPath and root: only the privileged level admits them.
                "pod-security.kubernetes.io/enforce": "privileged",
                "pod-security.kubernetes.io/warn": "privileged",
                "pod-security.kubernetes.io/audit": "privileged",
            },
        }
        return k8s.core.v1.Namespace(f"{self._name}-namespace", metadata=metadata, opts=self._opts())

    def _access(self, namespace: pulumi.Resource) -> list[pulumi.Resource]:
        """The pods' account and token, and what they may read and write."""
        name, ns = self._name, self._ns
        account = k8s.core.v1.ServiceAccount(f"{name}-account", metadata=self._meta(), opts=self._opts(namespace))
        rules: Any = [
            # Whether their DaemonSet is being deleted (registry/node/pod.sh).
            {
                "apiGroups": ["apps"],
                "resources": ["daemonsets"],
                "resourceNames": [NODE_TRUST_NAME, STORAGE_NAME],
                "verbs": ["get"],
            },
            # Which of their pods are not Ready, and why a node's create fails: events on the DaemonSet.
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        ]
        role = k8s.rbac.v1.Role(f"{name}-role", metadata=self._meta(), rules=rules, opts=self._opts(namespace))
        subjects: Any = [{"kind": "ServiceAccount", "name": NODE_TRUST_NAME, "namespace": ns}]
        role_ref: Any = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NODE_TRUST_NAME}
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-role-binding",
            metadata=self._meta(),
            role_ref=role_ref,
            subjects=subjects,
            opts=self._opts(namespace),
        )
        # Whether their namespace is being deleted: a namespace deleted by hand takes the
        # pods before the DaemonSet, and the nodes must be given back then too.
        cluster_name = f"{NODE_TRUST_NAME}:{ns}"
        cluster_meta: Any = {"name": cluster_name, "labels": app_labels(NODE_TRUST_NAME, self._args.hostname)}
        namespace_rules: Any = [
            {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": [ns], "verbs": ["get"]}
        ]
        cluster_role = k8s.rbac.v1.ClusterRole(
            f"{name}-namespace-reader", metadata=cluster_meta, rules=namespace_rules, opts=self._opts()
        )
        cluster_role_ref: Any = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name}
        cluster_binding = k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-namespace-reader-binding",
            metadata=cluster_meta,
            role_ref=cluster_role_ref,
            subjects=subjects,
            opts=self._opts(),
        )
        token = k8s.core.v1.Secret(
            f"{name}-token",
            metadata=self._meta(
                TOKEN_SECRET,
                annotations={
                    "kubernetes.io/service-account.name": NODE_TRUST_NAME,
                    # The token controller fills it in; the pods need it from their start.
                    "pulumi.com/waitFor": "jsonpath={.data.token}",
                },
            ),
            type="kubernetes.io/service-account-token",
            opts=self._opts(namespace, account),
        )
        return [account, role, binding, cluster_role, cluster_binding, token]

    def _image_pull_secret(self, namespace: pulumi.Resource, docker_config: pulumi.Input[str]) -> k8s.core.v1.Secret:
        return k8s.core.v1.Secret(
            f"{self._name}-image-pull",
            metadata=self._meta(IMAGE_PULL_SECRET),
            type="kubernetes.io/dockerconfigjson",
            string_data={".dockerconfigjson": docker_config},
            opts=self._opts(namespace),
        )

    def _files(self, suffix: str, prefix: str, files: pulumi.Input[dict], after: list) -> k8s.core.v1.ConfigMap:
        """An immutable ConfigMap named by its content."""
        contents = pulumi.Output.from_input(files)
        return k8s.core.v1.ConfigMap(
            f"{self._name}-{suffix}",
            metadata=self._meta(contents.apply(lambda data: files_name(prefix, data))),
            data=contents,
            immutable=True,
            opts=self._opts(*after),
        )

    def _trust(self, needed: list[pulumi.Resource]) -> k8s.apps.v1.DaemonSet:
        args = self._args
        stack = stack_identity()
        params = NodeTrustParams(hostname=args.hostname, port=args.port, stack=stack, entry=CLUSTER_ENTRY)
        files = self._files(
            "files",
            NODE_TRUST_NAME,
            pulumi.Output.all(args.cluster_ip, args.ca_cert_pem).apply(
                lambda values: daemon_files(params, values[0], values[1])
            ),
            needed,
        )
        labels = app_labels(NODE_TRUST_NAME, args.hostname)
        record = node_record(f"{args.hostname}:{args.port}", stack)
        trust = container("trust", args.image, NODE_TRUST_NAME, TRUST_GIVE_BACK)
        return k8s.apps.v1.DaemonSet(
            f"{self._name}-daemon-set",
            metadata=self._meta(annotations={NODE_TRUST_RECORD_ANNOTATION: record}),
            spec=files.metadata.name.apply(
                lambda files_name: daemon_set_spec(
                    labels, pod_spec(trust, files_name, args.image_pull_secret is not None)
                )
            ),
            opts=self._opts(
                *needed,
                files,
                # The old pods give the nodes back with the old record before the new ones write theirs.
                replace_on_changes=["metadata.annotations"],
                delete_before_replace=True,
                custom_timeouts=pulumi.CustomTimeouts(
                    create=f"{ROLLOUT_TIMEOUT_SECONDS}s",
                    update=f"{ROLLOUT_TIMEOUT_SECONDS}s",
                    delete=f"{DELETE_TIMEOUT_SECONDS}s",
                ),
            ),
        )

    def _storage(self, needed: list[pulumi.Resource]) -> k8s.apps.v1.DaemonSet:
        """The data folder on the storage node, prepared after that node trusts the
        registry (the node program's state root is root's before the folder is uid 1000's)."""
        args = self._args
        assert args.storage_node is not None and args.storage_path is not None
        # The claim names the namespace too: a new namespace makes a new DaemonSet,
        # which claims the folder before the old one's pod drops the old claim.
        way = f"{CLUSTER_ENTRY} {self._ns}"
        params = StorageParams(path=args.storage_path, keep=args.keep_data, claim=storage_claim(stack_identity(), way))
        files = self._files("storage-files", STORAGE_NAME, storage_daemon_files(params), needed)
        # Not the hostname (the other objects' instance): a selector cannot change,
        # and a DaemonSet whose selector changes is replaced.
        labels = {"app.kubernetes.io/name": STORAGE_NAME}
        folder = container("storage", args.image, STORAGE_NAME, STORAGE_GIVE_BACK)
        node = args.storage_node
        return k8s.apps.v1.DaemonSet(
            f"{self._name}-storage",
            metadata=self._meta(STORAGE_NAME, labels=labels),
            spec=files.metadata.name.apply(
                lambda files_name: daemon_set_spec(
                    labels, pod_spec(folder, files_name, args.image_pull_secret is not None, node=node)
                )
            ),
            # Never replaced: another folder or node rolls it, and the old folder stays.
            opts=self._opts(
                *needed,
                files,
                self.daemon_set,
                custom_timeouts=pulumi.CustomTimeouts(
                    create=f"{ROLLOUT_TIMEOUT_SECONDS}s",
                    update=f"{ROLLOUT_TIMEOUT_SECONDS}s",
                    delete=f"{DELETE_TIMEOUT_SECONDS}s",
                ),
            ),
        )
