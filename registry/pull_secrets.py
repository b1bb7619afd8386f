"""A `kubernetes.io/dockerconfigjson` Secret in every namespace whose pods pull from the registry."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

PULL_SECRET_NAME = "registry-pull-secret"


def docker_config_json(registries: Sequence[str], username: str, password: str) -> str:
    """The `.dockerconfigjson` document: one `auths` entry per address pods may use."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    entry = {"username": username, "password": password, "auth": auth}
    return json.dumps({"auths": {registry: entry for registry in registries}}, sort_keys=True)


@dataclass
class PullSecretsArgs:
    namespaces: Sequence[str]
    registries: Sequence[str]
    username: str
    password: pulumi.Input[str]
    # The workload's namespace, when it is one of `namespaces`, must exist first.
    registry_namespace: Optional[k8s.core.v1.Namespace] = None


class PullSecrets(pulumi.ComponentResource):
    name: str

    def __init__(self, name: str, args: PullSecretsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("registry:index:PullSecrets", name, None, opts)
        registries = list(args.registries)
        username = args.username
        config = pulumi.Output.secret(args.password).apply(
            lambda password: docker_config_json(registries, username, password)
        )
        for namespace in args.namespaces:
            depends = []
            if args.registry_namespace is not None:
                depends = [args.registry_namespace]
            k8s.core.v1.Secret(
                f"{name}-{namespace}",
                metadata={"name": PULL_SECRET_NAME, "namespace": namespace},
                type="kubernetes.io/dockerconfigjson",
                string_data={".dockerconfigjson": config},
                # The name is fixed: a replacement (another type or namespace)
                # must free it before the new Secret takes it.
                opts=pulumi.ResourceOptions(parent=self, depends_on=depends, delete_before_replace=True),
            )
        self.name = PULL_SECRET_NAME
        self.register_outputs({})
