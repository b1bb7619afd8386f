"""A `kubernetes.io/dockerconfigjson` Secret in every namespace whose pods pull from the registry."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from .config.model import KubeAccess
from .names import PULL_SECRET_NAME


def docker_config_json(registries: Sequence[str], username: str, password: str) -> str:
    """The `.dockerconfigjson` document: one `auths` entry per address pods may use."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    entry = {"username": username, "password": password, "auth": auth}
    return json.dumps({"auths": {registry: entry for registry in registries}}, sort_keys=True)


@dataclass
class PullSecretsArgs:
    namespaces: Sequence[str]
    registries: Sequence[str]
    # The pull-only user (registry:pullSecretUser) and its password.
    username: str
    password: pulumi.Input[str]
    # What serves that user's password: the registry's Deployment. The secrets change
    # only once it has rolled out, so that no pod pulls with a login its registry does
    # not know yet (an upgrade that moves them to a new user, a new password).
    after: Sequence[pulumi.Resource] = ()
    # The registry's own namespace, whose default ServiceAccount is left alone.
    own_namespace: str = ""
    # Also name the pull secret in each namespace's default ServiceAccount.
    service_accounts: bool = False
    # The stack's cluster, for the provider of those patches.
    kube: KubeAccess = field(default_factory=KubeAccess)


class PullSecrets(pulumi.ComponentResource):
    """The pull secrets, made (and changed) once the registry serves their login
    (`after`). A listed namespace that does not exist is refused before anything
    is made (registry/cluster/checks.py). The registry's own namespace's default
    ServiceAccount is not patched: kube-controller-manager makes it only after
    the namespace, and a patch needs the object to exist."""

    name: str

    def __init__(self, name: str, args: PullSecretsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("registry:index:PullSecrets", name, None, opts)
        registries = list(args.registries)
        username = args.username
        self._name = name
        self._config = pulumi.Output.secret(args.password).apply(
            lambda password: docker_config_json(registries, username, password)
        )
        # Server-side apply for the patches alone: the program's own objects are
        # created with client-side apply (Pulumi.yaml), which refuses to take
        # over an object that exists; a patch is meant to touch one that exists.
        # It talks to the stack's cluster: the kubernetes: config a provider made
        # here does not inherit (kubectl's current context otherwise).
        kube = args.kube
        own = args.own_namespace
        self._ssa = (
            k8s.Provider(
                f"{name}-server-side-apply",
                enable_server_side_apply=True,
                kubeconfig=pulumi.Output.secret(kube.kubeconfig) if kube.kubeconfig else None,
                context=kube.context,
                cluster=kube.cluster,
                opts=pulumi.ResourceOptions(parent=self),
            )
            if args.service_accounts
            else None
        )
        for namespace in args.namespaces:
            self._secret(namespace, list(args.after), patch_account=args.service_accounts and namespace != own)
        self.name = PULL_SECRET_NAME
        self.register_outputs({})

    def _secret(self, namespace: str, depends: list, patch_account: bool) -> None:
        secret = self._pull_secret(namespace, depends)
        if not patch_account:
            return
        # Pods that name no imagePullSecrets get it from their ServiceAccount, by
        # a server-side-apply patch with a field manager of its own. The API
        # server treats imagePullSecrets as one atomic list (tests/engine/test_engine.py
        # saw it): an account that already lists a pull secret is refused with
        # a field conflict and left as it is; one that lists none gets ours, and
        # destroy takes it back.
        k8s.core.v1.ServiceAccountPatch(
            f"{self._name}-{namespace}-default-account",
            metadata={"name": "default", "namespace": namespace},
            image_pull_secrets=[{"name": PULL_SECRET_NAME}],
            opts=pulumi.ResourceOptions(parent=self, provider=self._ssa, depends_on=[secret]),
        )

    def _pull_secret(self, namespace: str, depends: list) -> k8s.core.v1.Secret:
        return k8s.core.v1.Secret(
            f"{self._name}-{namespace}",
            metadata={"name": PULL_SECRET_NAME, "namespace": namespace},
            type="kubernetes.io/dockerconfigjson",
            string_data={".dockerconfigjson": self._config},
            # The name is fixed: a replacement (another type or namespace)
            # must free it before the new Secret takes it.
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends, delete_before_replace=True),
        )
