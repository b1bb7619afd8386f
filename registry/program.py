"""The program: read the settings, check the cluster, wire the components, export.

`run` is the whole of it. __main__.py calls it with the certificate and the
passwords the program makes (pulumi-tls, pulumi-random); the engine tests'
program (tests/support/engine/program.py) calls the same `run` with
certificates and passwords of its own, where those providers cannot run, and
without the SSH node commands (pulumi-command).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from .certificates import Certificates, CertificatesArgs
from .cluster import kubernetes
from .cluster.certificate import UserCertificate, user_certificate
from .cluster.checks import check_cluster, with_node_addresses
from .cluster_trust import ClusterNodeTrust, ClusterNodeTrustArgs
from .config.load import load_settings
from .config.model import Settings
from .config.rules import warnings
from .config.types import TrustMode
from .credentials import Credentials, CredentialsArgs
from .discovery import Discovery, DiscoveryArgs
from .names import service_dns_names
from .node_storage import NodeStorage, NodeStorageArgs
from .node_trust import NodeTrust, NodeTrustArgs, SshAccess
from .pod import PodConfig
from .pull_secrets import PullSecrets, PullSecretsArgs
from .workload import ServingCertificate, Workload, WorkloadArgs
from .workstation import setup_script

NodeSteps = Callable[[k8s.core.v1.Service], Sequence[pulumi.Resource]]


@dataclass
class Material:
    """The certificate and the passwords the registry serves with."""

    certificate: ServingCertificate
    # Everyone's htpasswd lines, and the pushers' alone (registry/proxy.py).
    htpasswd: pulumi.Input[str]
    pushers: pulumi.Input[str]
    http_secret: pulumi.Input[str]
    # Every user's: registry:users, registry:pullers and registry:pullSecretUser.
    passwords: Mapping[str, pulumi.Output[str]]


# Where the certificate and the passwords come from: given the settings and the
# certificate the user brings (or None), the Material the registry serves with.
MaterialSource = Callable[[Settings, "UserCertificate | None"], Material]


@dataclass
class Deployed:
    workload: Workload
    pull_secrets: PullSecrets


def pullers(settings: Settings) -> tuple[str, ...]:
    """Who may only pull: registry:pullers, and the pull secrets' own user."""
    return (*settings.pullers, settings.pull_secret_user)


def passwords(settings: Settings) -> Credentials:
    """A password for every user, their htpasswd files, and the registry's HTTP secret."""
    return Credentials("registry", CredentialsArgs(users=settings.users, pullers=pullers(settings)))


def own_certificates(settings: Settings) -> ServingCertificate:
    """A CA of the program's own (generations N and N-1) and a server certificate it signs."""
    made = Certificates(
        "registry",
        CertificatesArgs(
            hostname=settings.hostname,
            namespace=settings.namespace,
            node_hosts=settings.external_hosts,
            cluster_ip=settings.cluster_ip,
            ca_generation=settings.ca_generation,
            validity_days=settings.cert_validity_days,
        ),
    )
    return ServingCertificate(ca_pem=made.ca_bundle_pem, cert_pem=made.server_cert_pem, key_pem=made.server_key_pem)


def serving_certificate(
    user: UserCertificate | None,
    own: Callable[[], ServingCertificate],
) -> ServingCertificate:
    """The user's certificate when they bring one (from the config or their Secret,
    checked by registry/cluster/certificate.py), with no CA of the program's; else `own()`."""
    if user is not None:
        return ServingCertificate(ca_pem=user.ca, cert_pem=user.certificate, key_pem=user.key)
    return own()


def program_material(settings: Settings, user: UserCertificate | None) -> Material:
    """The passwords the program makes, and the user's certificate or one of its own."""
    credentials = passwords(settings)
    return Material(
        certificate=serving_certificate(user, lambda: own_certificates(settings)),
        htpasswd=credentials.htpasswd,
        pushers=credentials.pushers,
        http_secret=credentials.http_secret,
        passwords=credentials.passwords,
    )


def run(source: MaterialSource = program_material, *, node_commands: bool = True) -> None:
    """The whole program. Every config problem, then every problem the cluster shows,
    stops it before a resource is registered. `node_commands` False leaves out the
    SSH node commands (nodeTrust ssh), for the engine tests where pulumi-command
    cannot run; nodeTrust cluster is Kubernetes objects alone and runs either way."""
    settings = load_settings()
    for warning in warnings(settings):
        pulumi.log.warn(warning)
    cluster = kubernetes.connect(settings)
    check_cluster(settings, cluster)
    settings = with_node_addresses(settings, cluster)
    served = source(settings, user_certificate(settings, cluster))
    in_cluster_trust = settings.node_trust is TrustMode.CLUSTER
    nodes = prepare_nodes(settings, served.certificate.ca_pem) if node_commands or in_cluster_trust else None
    registry = deploy(settings, served, nodes) if nodes else deploy(settings, served)
    for name, value in stack_outputs(settings, served, registry).items():
        pulumi.export(name, value)


def ssh_access(settings: Settings) -> SshAccess:
    return SshAccess(
        private_key=settings.ssh_private_key, passphrase=settings.ssh_key_passphrase, bastion=settings.ssh_bastion
    )


def prepare_nodes(settings: Settings, ca_pem: pulumi.Input[str]) -> NodeSteps:
    """Every node trusts the CA bundle and resolves the name; with storage node
    the data folder is ready too. The pods roll out after what this returns."""

    if settings.node_trust is TrustMode.CLUSTER:

        def in_cluster_ready(service: k8s.core.v1.Service) -> list[pulumi.Resource]:
            trust = in_cluster(settings, ca_pem, service.spec.cluster_ip)
            return [trust.daemon_set, *([trust.storage] if trust.storage else [])]

        return in_cluster_ready
    ssh = ssh_access(settings)

    def prepare(service: k8s.core.v1.Service) -> list[pulumi.Resource]:
        trust = NodeTrust(
            "registry-node",
            NodeTrustArgs(
                nodes=settings.nodes,
                hostname=settings.hostname,
                port=settings.port,
                ssh=ssh,
                ca_cert_pem=ca_pem,
                cluster_ip=service.spec.cluster_ip,
                service=service,
            ),
        )
        ready: list[pulumi.Resource] = list(trust.commands.values())
        if settings.storage_node is not None and settings.storage_path is not None:
            ready.append(
                NodeStorage(
                    "registry-storage",
                    NodeStorageArgs(
                        node=settings.storage_node,
                        path=settings.storage_path,
                        keep=settings.keep_data,
                        ssh=ssh,
                        after=[trust.commands[settings.storage_node.name]],
                    ),
                ).command
            )
        return ready

    return prepare


def in_cluster(settings: Settings, ca_pem: pulumi.Input[str], cluster_ip: pulumi.Input[str]) -> ClusterNodeTrust:
    """nodeTrust cluster: a DaemonSet runs the node program on every node (with
    storage node, the data folder's too), and gives each node back on destroy."""
    storage = settings.storage_node
    return ClusterNodeTrust(
        "registry-node",
        ClusterNodeTrustArgs(
            hostname=settings.hostname,
            port=settings.port,
            namespace=settings.namespace,
            image=settings.node_trust_image,
            ca_cert_pem=ca_pem,
            cluster_ip=cluster_ip,
            storage_node=storage.name if storage else None,
            storage_path=settings.storage_path,
            keep_data=settings.keep_data,
            image_pull_secret=settings.image_pull_secret,
        ),
    )


def pod_config(settings: Settings) -> PodConfig:
    return PodConfig(
        hostname=settings.hostname,
        image=settings.image,
        proxy_image=settings.proxy_image,
        storage=settings.storage,
        s3=settings.s3,
        storage_path=settings.storage_path,
        storage_node=settings.storage_node.name if settings.storage_node else None,
        metrics=settings.metrics,
        resources=settings.resources,
        node_selector=settings.node_selector,
        tolerations=settings.tolerations,
        affinity=settings.affinity,
        image_pull_secret=settings.image_pull_secret is not None,
        gc_schedule=settings.gc_schedule,
    )


def _workload(settings: Settings, material: Material, nodes: NodeSteps) -> Workload:
    return Workload(
        "registry",
        WorkloadArgs(
            namespace=settings.namespace,
            pod=pod_config(settings),
            certificate=material.certificate,
            htpasswd=material.htpasswd,
            pushers=material.pushers,
            http_secret=material.http_secret,
            port=settings.port,
            node_port=settings.node_port,
            cluster_ip=settings.cluster_ip,
            replicas=settings.replicas,
            storage_size=settings.storage_size,
            storage_class=settings.storage_class,
            ca_generation=settings.ca_generation,
            s3_secret_access_key=settings.s3_secret_access_key,
            image_pull_secret=settings.image_pull_secret,
            prepare_nodes=nodes,
        ),
    )


def deploy(settings: Settings, material: Material, nodes: NodeSteps = lambda service: []) -> Deployed:
    """The workload, the pull secrets and the discovery ConfigMap. `nodes`
    prepares the nodes once the Service has its address; the pods wait for it."""
    workload = _workload(settings, material, nodes)
    puller = settings.pull_secret_user
    pull_secrets = PullSecrets(
        "registry-pull",
        PullSecretsArgs(
            namespaces=settings.pull_secret_namespaces,
            registries=[settings.endpoint, *settings.cluster_dns_endpoints, *settings.external_endpoints],
            username=puller,
            password=material.passwords[puller],
            # After the rollout: an upgrade from a release whose pull secrets logged in as
            # the first user moves them only once the pods know the puller.
            after=[workload.deployment],
            own_namespace=settings.namespace,
            kube=settings.kube,
            service_accounts=settings.service_account_pull_secret,
        ),
    )
    if settings.discovery:
        Discovery(
            "registry-discovery",
            DiscoveryArgs(
                endpoint=settings.endpoint,
                cluster_endpoint=f"{service_dns_names(settings.namespace)[0]}:{settings.port}",
                external_endpoint=(settings.external_endpoints or [None])[0],
            ),
        )
    return Deployed(workload=workload, pull_secrets=pull_secrets)


def external_endpoint(settings: Settings) -> str:
    """Where a workstation pushes: the first external endpoint, else the name nodes use."""
    return settings.external_endpoints[0] if settings.external_endpoints else settings.endpoint


def login_command(settings: Settings) -> str:
    target = external_endpoint(settings)
    return (
        f"pulumi stack output password --show-secrets | docker login {shlex.quote(target)} "
        f"--username {shlex.quote(settings.users[0])} --password-stdin"
    )


def stack_outputs(settings: Settings, material: Material, deployed: Deployed) -> dict[str, Any]:
    """The README's outputs contract, by name."""
    username = settings.users[0]
    ca_pem = material.certificate.ca_pem
    return {
        "endpoint": settings.endpoint,
        "externalEndpoints": settings.external_endpoints,
        "externalEndpoint": external_endpoint(settings),
        "clusterIp": deployed.workload.cluster_ip,
        "username": username,
        "password": pulumi.Output.secret(material.passwords[username]),
        "credentials": pulumi.Output.secret({user: material.passwords[user] for user in settings.users}),
        "pullUsername": settings.pull_secret_user,
        "pullerCredentials": pulumi.Output.secret({user: material.passwords[user] for user in settings.pullers}),
        "caCertificate": ca_pem,
        "pullSecretName": deployed.pull_secrets.name,
        "loginCommand": login_command(settings),
        "workstationSetup": pulumi.Output.from_input(ca_pem).apply(
            lambda ca: setup_script(settings.external_endpoints, ca, login_command(settings))
        ),
    }
