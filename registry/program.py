"""The program's wiring that does not depend on where keys and passwords come from.

__main__.py makes the certificates and passwords with pulumi-tls and
pulumi-random and hands them here as `Material`; so does the engine test's
program (tests/engine/program.py), which runs this same wiring through the
real Pulumi CLI and pulumi-kubernetes.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pulumi

from .discovery import Discovery, DiscoveryArgs
from .pull_secrets import PullSecrets, PullSecretsArgs
from .settings import Settings
from .workload import Workload, WorkloadArgs
from .workstation import setup_script


@dataclass
class Material:
    """The certificates and passwords the registry serves with."""

    # Every CA certificate clients trust (caGeneration N and N-1), one PEM file.
    ca_cert_pem: pulumi.Input[str]
    server_cert_pem: pulumi.Input[str]
    server_key_pem: pulumi.Input[str]
    htpasswd: pulumi.Input[str]
    http_secret: pulumi.Input[str]
    passwords: Mapping[str, pulumi.Output[str]]


@dataclass
class InCluster:
    workload: Workload
    pull_secrets: PullSecrets


def deploy_in_cluster(
    settings: Settings,
    material: Material,
    trust_nodes: Callable[[Workload], Sequence[pulumi.Resource]] = lambda workload: [],
) -> InCluster:
    """The workload, the pull secrets and the discovery ConfigMap, from the settings and the material.

    `trust_nodes` makes the nodes trust the CA and resolve the Service's
    clusterIP; the pods roll out after what it returns.
    """
    username = settings.users[0]
    pull_secrets = PullSecrets(
        "registry-pull",
        PullSecretsArgs(
            namespaces=settings.pull_secret_namespaces,
            registries=[settings.endpoint, *settings.cluster_dns_endpoints, *settings.external_endpoints],
            username=username,
            password=material.passwords[username],
            own_namespace=settings.namespace,
            kube=settings.kube,
            service_accounts=settings.service_account_pull_secret,
        ),
    )
    workload = Workload(
        "registry",
        WorkloadArgs(
            settings=settings,
            ca_cert_pem=material.ca_cert_pem,
            server_cert_pem=material.server_cert_pem,
            server_key_pem=material.server_key_pem,
            htpasswd=material.htpasswd,
            http_secret=material.http_secret,
            after=pull_secrets.foreign,
        ),
    )
    pull_secrets.add_own(workload.namespace)
    workload.roll_out(after=trust_nodes(workload))
    if settings.discovery:
        Discovery("registry-discovery", DiscoveryArgs(settings=settings, after=pull_secrets.foreign))
    return InCluster(workload=workload, pull_secrets=pull_secrets)


def login_command(settings: Settings) -> str:
    target = settings.external_endpoints[0] if settings.nodes else settings.endpoint
    return (
        f"pulumi stack output password --show-secrets | docker login {target} "
        f"--username {shlex.quote(settings.users[0])} --password-stdin"
    )


def stack_outputs(settings: Settings, material: Material, cluster: InCluster) -> dict[str, Any]:
    """The README's outputs contract, by name."""
    username = settings.users[0]
    return {
        "endpoint": settings.endpoint,
        "externalEndpoints": settings.external_endpoints,
        "clusterIp": cluster.workload.cluster_ip,
        "username": username,
        "password": pulumi.Output.secret(material.passwords[username]),
        "credentials": pulumi.Output.secret(dict(material.passwords)),
        "caCertificate": material.ca_cert_pem,
        "pullSecretName": cluster.pull_secrets.name,
        "loginCommand": login_command(settings),
        "workstationSetup": pulumi.Output.from_input(material.ca_cert_pem).apply(
            lambda ca: setup_script(settings.external_endpoints, ca, login_command(settings))
        ),
    }
