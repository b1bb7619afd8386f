"""Write a small OCI image layout that skopeo can push: `oci:DIR:TAG`."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import tarfile
from pathlib import Path

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _blob(root: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layer(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def write_image(root: Path, tag: str, layers: int = 1, layer_bytes: int = 1024, seed: bytes = b"") -> str:
    """An image of `layers` layers, each one file of `layer_bytes` random bytes; returns the manifest digest."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    layer_descs, diff_ids = [], []
    for i in range(layers):
        content = seed + os.urandom(layer_bytes)
        tar = _layer(f"layer-{i}.bin", content)
        layer_descs.append({"mediaType": LAYER, **_blob(root, tar)})
        diff_ids.append(f"sha256:{hashlib.sha256(tar).hexdigest()}")
    config = {
        "architecture": ARCH,
        "os": "linux",
        "config": {"Cmd": ["/layer-0.bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_desc = {"mediaType": CONFIG, **_blob(root, json.dumps(config).encode())}
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "config": config_desc, "layers": layer_descs}
    manifest_desc = {"mediaType": MANIFEST, **_blob(root, json.dumps(manifest).encode())}
    manifest_desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]}))
    return manifest_desc["digest"]


def read_image(root: Path) -> tuple[list[str], list[str]]:
    """(diff_ids from the config, sha256 of every layer once uncompressed) of the layout's first image."""
    def blob(digest: str) -> bytes:
        return (root / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()

    index = json.loads((root / "index.json").read_text())
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    layers = []
    for layer in manifest["layers"]:
        data = blob(layer["digest"])
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        layers.append(f"sha256:{hashlib.sha256(data).hexdigest()}")
    return config["rootfs"]["diff_ids"], layers


INDEX = "application/vnd.oci.image.index.v1+json"
IN_TOTO = "application/vnd.in-toto+json"


def _image_manifest(root: Path, architecture: str, os_: str = "linux", layer_bytes: int = 1024) -> dict:
    tar = _layer("app.bin", os.urandom(layer_bytes))
    layer = {"mediaType": LAYER, **_blob(root, tar)}
    config = {"architecture": architecture, "os": os_, "rootfs": {"type": "layers",
              "diff_ids": [f"sha256:{hashlib.sha256(tar).hexdigest()}"]}}
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST,
                "config": {"mediaType": CONFIG, **_blob(root, json.dumps(config).encode())}, "layers": [layer]}
    return {"mediaType": MANIFEST, **_blob(root, json.dumps(manifest).encode())}


def write_index(root: Path, tag: str, kind: str) -> dict[str, list[str]]:
    """An OCI index as users push them, in a layout for `skopeo copy --all oci:DIR:TAG`:
    kind "multi-arch" holds linux/amd64 and linux/arm64 images; kind "buildx" is what
    `docker buildx build --push` makes for one platform, the image plus its provenance
    attestation (a manifest for unknown/unknown that refers to the image by digest).
    Returns {"index": [digest], "children": [digests], "blobs": [every config and layer]}."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    children = []
    if kind == "multi-arch":
        for arch in ("amd64", "arm64"):
            children.append({**_image_manifest(root, arch), "platform": {"architecture": arch, "os": "linux"}})
    elif kind == "buildx":
        image = {**_image_manifest(root, ARCH), "platform": {"architecture": ARCH, "os": "linux"}}
        statement = json.dumps({"_type": "https://in-toto.io/Statement/v0.1",
                                "predicateType": "https://slsa.dev/provenance/v0.2", "subject": []}).encode()
        layer = {"mediaType": IN_TOTO, **_blob(root, statement),
                 "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}}
        config = {"architecture": "unknown", "os": "unknown", "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}
        attestation = {"schemaVersion": 2, "mediaType": MANIFEST,
                       "config": {"mediaType": CONFIG, **_blob(root, json.dumps(config).encode())}, "layers": [layer]}
        children = [image, {"mediaType": MANIFEST, **_blob(root, json.dumps(attestation).encode()),
                            "platform": {"architecture": "unknown", "os": "unknown"},
                            "annotations": {"vnd.docker.reference.digest": image["digest"],
                                            "vnd.docker.reference.type": "attestation-manifest"}}]
    else:
        raise ValueError(kind)
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": children}
    index_desc = {"mediaType": INDEX, **_blob(root, json.dumps(index).encode()),
                  "annotations": {"org.opencontainers.image.ref.name": tag}}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [index_desc]}))
    blobs = []
    for child in children:
        manifest = json.loads((root / "blobs" / "sha256" / child["digest"].split(":", 1)[1]).read_bytes())
        blobs += [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    return {"index": [index_desc["digest"]], "children": [c["digest"] for c in children], "blobs": blobs}
