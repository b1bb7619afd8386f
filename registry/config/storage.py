"""The settings of where the registry keeps its images: a claim, a node's folder, or a bucket.
One field per config key (registry/config/keys.py declares how)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from .checks import (
    S3_SHAPE,
    quantity,
    storage_class,
)
from .keys import setting
from .types import S3, Node
from .validators import (
    boolean,
    integer,
    one_of,
    text,
)

STORAGES = ("pvc", "s3", "node")
DEFAULT_STORAGE_PATH = "/var/lib/registry-data"
MAX_REPLICAS = 20


@dataclass(frozen=True)
class StorageSettings:
    storage: str = setting(
        "storage",
        one_of(*STORAGES),
        "pvc",
        "Where the registry keeps images, pvc (one volume), node (a folder on one node) or s3 (object storage).",
        doc=(
            "where images live: `pvc` (one volume, one pod), `node` (a folder on one node, for "
            "clusters without a storage provisioner) or `s3` (a bucket of any S3 API); see "
            "[Storage](operations.md#storage)"
        ),
    )
    storage_size: str = setting(
        "storageSize", quantity, "10Gi", "Size of the registry's PersistentVolumeClaim.", doc="PVC size"
    )
    storage_class: str | None = setting(
        "storageClass",
        storage_class,
        None,
        "StorageClass of the claim (else the cluster's default).",
        doc_default="cluster default",
        doc="PVC storage class",
    )
    replicas: int = setting(
        "replicas",
        integer(1, MAX_REPLICAS),
        1,
        "Pods serving the registry; more than 1 needs storage s3.",
        doc="pods serving the registry, 1-20; more than 1 needs `storage: s3`",
    )
    s3: S3 | None = setting(
        "s3",
        text,
        None,
        f"With storage s3: {S3_SHAPE}.",
        doc_type="object",
        doc=(
            "with `storage: s3`: `{bucket, endpoint?, region?, forcePathStyle?, rootDirectory?, "
            "redirect?}`. `endpoint` is the S3 URL for anything that is not AWS (`http://` or "
            "`https://`); `region` defaults to `us-east-1`; `forcePathStyle` to true when `endpoint` "
            "is set; `redirect` to false, so that nodes fetch blobs through the registry and never "
            "need to reach the bucket"
        ),
    )
    s3_access_key_id: str | None = setting(
        "s3AccessKeyId",
        text,
        None,
        "Access key of the bucket; with s3SecretAccessKey, or neither.",
        doc="access key for the bucket; omit it and the next one to use the pod's own cloud identity",
    )
    s3_secret_access_key: pulumi.Output[str] | None = setting(
        "s3SecretAccessKey",
        text,
        None,
        "Secret key of the bucket.",
        secret=True,
        doc=(
            "its secret key (`pulumi config set --secret registry:s3SecretAccessKey`); reaches the "
            "pods from a Secret only"
        ),
    )
    storage_node: Node | None = setting(
        "storageNode",
        text,
        None,
        "With storage node: the nodes entry whose folder keeps the data.",
        doc=(
            "with `storage: node`: the `nodes` entry (named as the node is in Kubernetes) whose folder keeps the images"
        ),
    )
    storage_path: str | None = setting(
        "storagePath",
        text,
        None,
        f"With storage node: the folder (default {DEFAULT_STORAGE_PATH}).",
        doc_default="`/var/lib/registry-data`",
        doc=("with `storage: node`: that folder, a folder of its own below `/var/lib/`, `/srv/`, `/data/` or `/mnt/`"),
    )
    keep_data: bool = setting(
        "keepData",
        boolean,
        None,
        "With storage node: whether destroy leaves the folder (default true).",
        doc_type="boolean",
        doc_default="`true` with `storage: node`",
        doc=(
            "whether `pulumi destroy` leaves the folder and the images in it (see "
            "[Storage](operations.md#storage)); only `storage: node` takes it"
        ),
    )
