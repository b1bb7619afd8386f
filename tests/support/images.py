"""Container images made here, from this machine's own binaries: nothing comes from the internet.

Each image is a folder of files (a program and the libraries `ldd` says it
needs, busybox for a shell) packed as one layer of an OCI image layout, with
the config a Dockerfile would give it, and an archive of that layout that
`ctr images import` loads into a node's containerd (tests/support/real_node.py):

- `pause`: the pods' sandbox, GNU `sleep infinity`;
- `registry`: the distribution registry that tests/build_registry.sh builds (the
  version the default image runs), with the registry:3 image's config.yml, its
  entrypoint and env, and busybox for the serve and collection scripts;
- `nginx`: Debian's nginx (tests/build_nginx.sh), the registry pod's proxy
  (registry/proxy.py), run with the command and config the pod gives it;
- `node-trust`: what nodeTrust cluster's pods need, busybox's `sh` and `chroot`
  and Debian's `curl`;
- `hello`: busybox's `echo`, for a pod that says hello and ends.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.oci import ARCH, CONFIG, MANIFEST, _blob
from tests.support.registry_server import IMAGE_CONFIG, IMAGE_CONFIG_PATH, IMAGE_ENV, NGINX_BINARY, REGISTRY_BINARY

# What the node-trust pod's script and the registry's scripts run, besides sh.
BUSYBOX_APPLETS = (
    "sh", "chroot", "cat", "echo", "printf", "sleep", "kill", "date", "dd", "stat", "grep", "sed", "awk", "tr",
    "cut", "head", "tail", "sort", "wc", "mkdir", "rm", "ls", "mktemp", "id", "env", "true", "false", "test", "[",
)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Where the images' names start: no registry anywhere has these.
PREFIX = "localhost/registry-test"


@dataclass(frozen=True)
class Image:
    """An image made here: its name, its layout folder, its archive for `ctr images import`, its digest."""

    name: str
    layout: Path
    archive: Path
    digest: str

    @property
    def pinned(self) -> str:
        """The name with its digest, as registry:nodeTrustImage wants it."""
        return f"{self.name}@{self.digest}"


def libraries(binary: str) -> list[str]:
    """The shared libraries `binary` loads, and its loader, as ldd finds them on this machine."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    found = re.findall(r"=> (/\S+)", out) + re.findall(r"^\s*(/\S+ld-linux\S*)", out, re.M)
    return sorted(set(found))


def install(root: Path, path: str, source: str | None = None) -> None:
    """Copy a file of this machine into the image's root, at the same path (its content, links followed)."""
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source or path, target, follow_symlinks=True)


def with_libraries(root: Path, *binaries: str) -> None:
    for binary in binaries:
        install(root, binary)
        for library in libraries(binary):
            install(root, library)


def with_busybox(root: Path) -> None:
    busybox = shutil.which("busybox")
    assert busybox, "busybox is needed (apt-get install busybox)"
    with_libraries(root, busybox)
    (root / "bin").mkdir(exist_ok=True)
    if busybox != "/bin/busybox":
        install(root, "/bin/busybox", busybox)
    for applet in BUSYBOX_APPLETS:
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")


def _layer(root: Path) -> bytes:
    """The folder as one uncompressed layer, owned by root, times fixed: the same bytes each time."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(root)))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            if info.isfile():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def pack(root: Path, folder: Path, name: str, config: dict) -> Image:
    """An OCI layout of one layer (the folder) and `config`, and its archive for ctr."""
    layout = folder / "layout"
    shutil.rmtree(layout, ignore_errors=True)
    layout.mkdir(parents=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    tar = _layer(root)
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar", **_blob(layout, tar)}
    image_config = {
        "architecture": ARCH, "os": "linux", "config": {"Env": [f"PATH={PATH}"], **config},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar).hexdigest()}"]},
    }
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST,
                "config": {"mediaType": CONFIG, **_blob(layout, json.dumps(image_config).encode())}, "layers": [layer]}
    descriptor = {"mediaType": MANIFEST, **_blob(layout, json.dumps(manifest).encode())}
    tag = name.rsplit(":", 1)[1]
    # ctr names an imported image by io.containerd.image.name; skopeo's oci:DIR:TAG reads ref.name.
    descriptor["annotations"] = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [descriptor]}))
    archive = folder / "image.tar"
    with tarfile.open(archive, "w") as out:
        for path in sorted(layout.rglob("*")):
            out.add(path, arcname=str(path.relative_to(layout)), recursive=False)
    return Image(name, layout, archive, descriptor["digest"])


def build(folder: Path) -> dict[str, Image]:
    """The five images, under `folder` (one sub-folder each)."""
    images = {}

    def root(kind: str) -> Path:
        path = folder / kind / "root"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    pause = root("pause")
    with_libraries(pause, shutil.which("sleep") or "/bin/sleep")
    images["pause"] = pack(pause, folder / "pause", f"{PREFIX}/pause:1",
                           {"Entrypoint": [shutil.which("sleep") or "/bin/sleep", "infinity"]})

    registry = root("registry")
    with_busybox(registry)
    install(registry, "/bin/registry", REGISTRY_BINARY)
    (registry / IMAGE_CONFIG_PATH.lstrip("/")).parent.mkdir(parents=True)
    (registry / IMAGE_CONFIG_PATH.lstrip("/")).write_text(IMAGE_CONFIG)
    (registry / "var/lib/registry").mkdir(parents=True)
    (registry / "tmp").mkdir()
    (registry / "tmp").chmod(0o1777)
    # The registry:3 image's entrypoint runs `registry serve` on its config.
    images["registry"] = pack(registry, folder / "registry", f"{PREFIX}/registry:3.1.1", {
        "Entrypoint": ["registry", "serve"], "Cmd": [IMAGE_CONFIG_PATH],
        "Env": [f"PATH={PATH}", *(f"{k}={v}" for k, v in IMAGE_ENV.items())], "ExposedPorts": {"5000/tcp": {}}})

    nginx = root("nginx")
    # At the path the official image has it, in PATH.
    install(nginx, "/usr/sbin/nginx", NGINX_BINARY)
    for library in libraries(NGINX_BINARY):
        install(nginx, library)
    (nginx / "tmp").mkdir()
    (nginx / "tmp").chmod(0o1777)
    images["nginx"] = pack(nginx, folder / "nginx", f"{PREFIX}/nginx:1.22.1", {"Entrypoint": ["nginx"]})

    trust = root("node-trust")
    with_busybox(trust)
    with_libraries(trust, shutil.which("curl") or "/usr/bin/curl")
    (trust / "tmp").mkdir()
    (trust / "tmp").chmod(0o1777)
    images["node-trust"] = pack(trust, folder / "node-trust", f"{PREFIX}/node-trust:1", {"Cmd": ["/bin/sh"]})

    hello = root("hello")
    with_busybox(hello)
    images["hello"] = pack(hello, folder / "hello", f"{PREFIX}/hello:v1",
                           {"Cmd": ["/bin/echo", "hello from the private registry"]})
    for image in images.values():
        os.chmod(image.archive, 0o644)
    return images
