"""Pulumi program: a private, TLS- and password-protected registry that every node trusts."""

import shlex

import pulumi

from registry.certificates import Certificates, CertificatesArgs
from registry.credentials import Credentials, CredentialsArgs
from registry.node_trust import NodeTrust, NodeTrustArgs
from registry.pull_secrets import PullSecrets, PullSecretsArgs
from registry.settings import load_settings
from registry.workload import Workload, WorkloadArgs

settings = load_settings()

certificates = Certificates("registry", CertificatesArgs(settings=settings))
credentials = Credentials("registry", CredentialsArgs(users=settings.users))
workload = Workload(
    "registry",
    WorkloadArgs(
        settings=settings,
        ca_cert_pem=certificates.ca_cert_pem,
        server_cert_pem=certificates.server_cert_pem,
        server_key_pem=certificates.server_key_pem,
        htpasswd=credentials.htpasswd,
        http_secret=credentials.http_secret,
    ),
)
username = settings.users[0]
password = credentials.passwords[username]
pull_secrets = PullSecrets(
    "registry-pull",
    PullSecretsArgs(
        namespaces=settings.pull_secret_namespaces,
        registries=[settings.endpoint, *settings.external_endpoints],
        username=username,
        password=password,
        registry_namespace=workload.namespace if settings.namespace in settings.pull_secret_namespaces else None,
    ),
)
NodeTrust(
    "registry-node",
    NodeTrustArgs(
        settings=settings,
        ca_cert_pem=certificates.ca_cert_pem,
        cluster_ip=workload.cluster_ip,
        service=workload.service,
    ),
)

login_target = settings.external_endpoints[0] if settings.nodes else settings.endpoint
pulumi.export("endpoint", settings.endpoint)
pulumi.export("externalEndpoints", settings.external_endpoints)
pulumi.export("clusterIp", workload.cluster_ip)
pulumi.export("username", username)
pulumi.export("password", pulumi.Output.secret(password))
pulumi.export("credentials", pulumi.Output.secret(credentials.passwords))
pulumi.export("caCertificate", certificates.ca_cert_pem)
pulumi.export("pullSecretName", pull_secrets.name)
pulumi.export(
    "loginCommand",
    f"pulumi stack output password --show-secrets | docker login {login_target} --username {shlex.quote(username)} --password-stdin",
)
