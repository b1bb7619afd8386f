"""The settings of the registry as a workload: its name and address, its image and pods,
its users and who pulls with them, collection and the check of the cluster. One field
per config key (registry/config/keys.py declares how)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from .checks import (
    affinity_shape,
    cron,
    docker_config,
    image_reference,
    label_map,
    namespace_name,
    own_namespace,
    registry_hostname,
    resource_amounts,
    toleration,
    user,
    whole,
)
from .keys import setting
from .validators import (
    Check,
    all_of,
    boolean,
    integer,
    ip_address,
    json_list,
    json_object,
    network,
)

# The registry image is pinned to a patch release: a floating tag would let a
# pod restart change the registry under the user's feet. Distribution 3, since
# 2.8's `garbage-collect --delete-untagged` deletes the platform images and
# attestations of every tagged multi-arch or buildx index (distribution#3178,
# #3004; tests/e2e/test_gc.py). 3.1.1 is the newest 3.x that Docker Hub's official
# image carries (docker-library/official-images#21360); the tests build the
# same version from the Go module proxy (tests/build_registry.sh).
DEFAULT_IMAGE = "registry:3.1.1"
# nginx in front of the registry (registry/proxy.py): the official image's stable
# release, pinned by the digest of its index (docker-library/repo-info,
# repos/nginx/remote/stable-alpine.md, 2026-10-21: nginx 1.30.6 on Alpine 3.24).
DEFAULT_PROXY_IMAGE = "nginx:1.30.6-alpine@sha256:0e52bd054126cdc040b1276c0af347aeb02a41b9cfe305d6094767ac30e97949"
# The pull-only user of the pull secrets.
DEFAULT_PULL_SECRET_USER = "cluster-puller"
# The registry container's resources unless `resources` says otherwise.
DEFAULT_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
MAX_CA_GENERATION = 1000
DEFAULT_GC_SCHEDULE = "0 3 * * 0"


def _object(shape: str, check: Check) -> Check:
    return all_of(json_object(shape), check)


@dataclass(frozen=True)
class ServiceSettings:
    hostname: str = setting(
        "hostname",
        registry_hostname,
        "image-registry",
        "Name nodes and pods use in image references (a lower-case DNS name).",
        doc=(
            "name nodes and pods use in image references (lower-case DNS name, at most 52 characters, not `localhost`)"
        ),
    )
    namespace: str = setting(
        "namespace",
        own_namespace,
        "registry",
        "Namespace of the registry workload.",
        doc=(
            "namespace of the workload. It must not exist yet: the program creates it and destroy "
            "deletes it. `default` and the `kube-*` namespaces are refused from the config, any other"
            " existing one that this program did not create from the cluster, before anything is "
            "created"
        ),
    )
    port: int = setting(
        "port",
        integer(1, 65535),
        5000,
        "Service port; part of every image reference (hostname:port/...).",
        doc="Service port, part of every image reference",
    )
    service_cidr: str = setting(
        "serviceCidr",
        network,
        "10.96.0.0/12",
        "The cluster's Service CIDR; clusterIp must be inside it.",
        doc="the cluster's Service range; `clusterIp` must be inside",
    )
    cluster_ip: str | None = setting(
        "clusterIp",
        ip_address,
        None,
        "Fixed ClusterIP of the Service (else allocated).",
        doc_default="allocated",
        doc=(
            "fixed ClusterIP; nodes' hosts entries point here. Set it: a fixed IP survives "
            "re-creating the Service and is in the certificate. Not the first address of the range "
            "(the API server's own Service)"
        ),
    )
    node_port: int = setting(
        "nodePort",
        integer(30000, 32767),
        30500,
        "Port on every node for access from outside the cluster (30000-32767).",
        doc="port on every node for use outside the cluster, 30000-32767",
    )
    image: str = setting(
        "image",
        image_reference(DEFAULT_IMAGE),
        DEFAULT_IMAGE,
        "Registry image, pinned.",
        doc=(
            "registry image; a 2.x image is refused while `gcSchedule` is set (see [Which "
            "registry](decisions.md#which-registry-distribution-3-not-28))"
        ),
    )
    proxy_image: str = setting(
        "proxyImage",
        image_reference(DEFAULT_PROXY_IMAGE),
        DEFAULT_PROXY_IMAGE,
        "nginx image in front of the registry (who may push), pinned.",
        doc_default="`nginx:1.30.6-alpine@sha256:0e52…7949`",
        doc=(
            "the nginx image that runs in the registry's pod in front of it and decides who may push "
            "(see [Pushers and pullers](decisions.md#pushers-and-pullers-nginx-in-the-pod)); "
            "from a private mirror, `imagePullSecret` serves it too"
        ),
    )
    users: tuple[str, ...] = setting(
        "users",
        json_list(user, unique="is listed twice; each user must be unique", non_empty="must list at least one user"),
        ("admin",),
        "Users who push (and pull, and delete); the first one is the username output.",
        doc="users who push, pull and delete; the first is the `username` output",
    )
    pullers: tuple[str, ...] = setting(
        "pullers",
        json_list(user, unique="is listed twice; each user must be unique"),
        (),
        "Users who may only pull (GET and HEAD); passwords in the pullerCredentials output.",
        doc_default="none",
        doc=(
            "users who may only pull: every write (push, delete) is refused with 401; their passwords are "
            "the `pullerCredentials` output. Not in `users`"
        ),
    )
    pull_secret_user: str = setting(
        "pullSecretUser",
        user,
        DEFAULT_PULL_SECRET_USER,
        "The pull-only user of the pull secrets; its password is generated and no output shows it.",
        doc=(
            "the pull-only user the pull secrets log in as (the `pullUsername` output); its password is "
            "generated and lives only in the pull secrets. Not in `users` or `pullers`"
        ),
    )
    pull_secret_namespaces: tuple[str, ...] = setting(
        "pullSecretNamespaces",
        json_list(namespace_name, unique="is listed twice"),
        ("default",),
        "Namespaces that get the dockerconfigjson pull secret.",
        doc=(
            "namespaces that get the pull secret (they must exist: a missing one is refused before "
            "anything is created; a `registry-pull-secret` already there is refused, not overwritten)"
        ),
    )
    cert_validity_days: int = setting(
        "certValidityDays",
        integer(1, 825),
        365,
        "Validity of the server certificate in days (1-825); it renews before expiry.",
        doc="server certificate validity, 1-825",
    )
    ca_generation: int = setting(
        "caGeneration",
        integer(1, MAX_CA_GENERATION),
        1,
        "Raise by one to rotate the CA; nodes trust the new and the previous one.",
        doc=(
            "raise it by one to rotate the CA: nodes trust generation N and N-1, the server "
            "certificate is signed by N (see [Rotating the CA](operations.md#rotating-the-ca)); "
            "1-1000"
        ),
    )
    gc_schedule: str | None = setting(
        "gcSchedule",
        cron,
        DEFAULT_GC_SCHEDULE,
        'Cron schedule of garbage collection (storage pvc; none with s3); "" turns it off.',
        blank_is_unset=False,
        doc_default='`"0 3 * * 0"`',
        doc=(
            "cron schedule (five fields or a macro such as `@daily`) of garbage collection, which deletes untagged "
            "images' layers while the registry is read-only for a moment (see [Garbage collection]"
            '(operations.md#garbage-collection)); `""` turns it off. With `storage: s3` there is none: the default '
            "means off, any other schedule is refused"
        ),
    )
    metrics: bool = setting(
        "metrics",
        boolean,
        True,
        "Prometheus metrics on their own port, not on the node port.",
        doc=(
            "Prometheus metrics on the pod's own port `metrics` (5001), announced by "
            "`prometheus.io/*` pod annotations; never on the Service or the node port"
        ),
    )
    discovery: bool = setting(
        "discovery",
        boolean,
        True,
        "Publish kube-public/local-registry-hosting (KEP-1755); one registry per cluster can.",
        doc=(
            "publish the registry in `kube-public/local-registry-hosting` (KEP-1755), where Tilt, "
            "ctlptl and Skaffold look; set `false` for a second registry in one cluster"
        ),
    )
    resources: dict = setting(
        "resources",
        _object("{requests?: {cpu?, memory?}, limits?: {cpu?, memory?}}", whole(resource_amounts)),
        DEFAULT_RESOURCES,
        "The container's requests and limits.",
        doc_type="object",
        doc_default="`{requests: {cpu: 100m, memory: 128Mi}, limits: {memory: 512Mi}}`",
        doc=(
            "the registry container's `requests` and `limits` (`cpu`, `memory`, `ephemeral-storage`),"
            " replacing the default as a whole"
        ),
    )
    node_selector: dict = setting(
        "nodeSelector",
        _object("of node label to value", whole(label_map)),
        {},
        "Node labels the pod must match.",
        doc_type="object",
        doc_default="none",
        doc="node labels the registry's pod must match, as in a pod spec",
    )
    tolerations: tuple = setting(
        "tolerations",
        whole(json_list(toleration)),
        (),
        "Taints the pod tolerates.",
        doc_type="list of objects",
        doc_default="none",
        doc="`{key?, operator?, value?, effect?, tolerationSeconds?}`, as in a pod spec",
    )
    affinity: dict | None = setting(
        "affinity",
        _object("{nodeAffinity?, podAffinity?, podAntiAffinity?}", affinity_shape),
        None,
        "Affinity as in a pod spec.",
        doc_type="object",
        doc=(
            "`{nodeAffinity?, podAffinity?, podAntiAffinity?}`, as in a pod spec, checked only for "
            "its shape; the API server checks the rest"
        ),
    )
    image_pull_secret: pulumi.Output[str] | None = setting(
        "imagePullSecret",
        docker_config,
        None,
        "A .dockerconfigjson for pulling the registry's own image.",
        secret=True,
        doc=(
            'a `.dockerconfigjson` document (`{"auths": {...}}`, such as `~/.docker/config.json` '
            "after `docker login`) for pulling `image` from a private mirror: `pulumi config set "
            "--secret registry:imagePullSecret < config.json`. It becomes the Secret "
            "`registry-image-pull` that the registry's pods (and the collection's) pull with"
        ),
    )
    service_account_pull_secret: bool = setting(
        "serviceAccountPullSecret",
        boolean,
        False,
        "Name the pull secret in each listed namespace's default ServiceAccount.",
        doc=(
            "also name the pull secret in the `default` ServiceAccount of each listed namespace (not "
            "the registry's own), so that pods need no `imagePullSecrets`. A server-side-apply patch "
            "that destroy takes back. The API server treats an account's `imagePullSecrets` as one "
            "list, which a patch cannot share: an account that already lists another pull secret is "
            "refused before anything is created, and keeps its list; add `registry-pull-secret` to "
            "such an account by hand"
        ),
    )
    cluster_check: bool = setting(
        "clusterCheck",
        boolean,
        True,
        "Read the cluster before anything is created; false where it cannot be read as pulumi-kubernetes reads it.",
        doc=(
            "read the cluster before anything is created ([what is "
            "checked](#what-is-checked-in-the-cluster-first)); `pulumi up` refuses to go on when it "
            "cannot read it. Set `false` only where pulumi-kubernetes reaches the cluster in a way "
            "the check cannot (an auth plugin it cannot run): then nothing is checked first, with a "
            "warning at every run (`tlsSecret` still reads its Secret)"
        ),
    )
