#!/usr/bin/env python3
"""What checking passwords costs push and pull: the registry's own htpasswd, and the pod's proxy.

Pushes a multi-layer image with skopeo and pulls it back, side by side in one run:

- the registry alone with TLS and no auth (the baseline);
- the registry alone with TLS and its own htpasswd, at several bcrypt costs (what the
  pod ran before the proxy);
- the pod as the program renders it (tests/support/registry_server.py): nginx terminating
  TLS and checking the htpasswd (bcrypt cost 5), the registry behind it on loopback;
- the same pod with nginx's auth_basic taken out, to show what the extra hop costs.

Both check bcrypt on every request and cache nothing, so the cost is paid per blob, per
manifest, per HEAD.

    python3 bench/auth_cost.py [--layers 20] [--layer-mib 1] [--repeats 3]

Needs no network beyond loopback; runs the registry tests/build_registry.sh builds (the
version the default image runs), Debian's nginx (tests/build_nginx.sh) and skopeo.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import bcrypt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from registry.credentials import BCRYPT_COST
from tests.support.oci import write_image
from tests.support.polling import eventually
from tests.support.registry_server import IMAGE_CONFIG, IMAGE_ENV, NGINX_BINARY, REGISTRY_BINARY, PodSource, Registry
from tests.support.stack import run_stack

CLUSTER_IP = "127.0.10.2"
PORT = 5000


def skopeo_copy(src: str, dest: str, cert_dir: Path, authfile: Path | None) -> float:
    args = ["skopeo", "copy", "--quiet", "--src-cert-dir", str(cert_dir), "--dest-cert-dir", str(cert_dir)]
    if authfile:
        args += ["--src-authfile", str(authfile), "--dest-authfile", str(authfile)]
    started = time.perf_counter()
    subprocess.run([*args, src, dest], check=True, capture_output=True)
    return time.perf_counter() - started


def measure(work: Path, image: Path, authfile: Path | None, repeats: int, label: str) -> float:
    """The median of `repeats` push-then-pull times, each to a new repository (no layer already there)."""
    times = []
    for i in range(repeats):
        ref = f"docker://{CLUSTER_IP}:{PORT}/bench/{label}-{i}:v1"
        pulled = work / f"pulled-{label}-{i}"
        push = skopeo_copy(f"oci:{image}:v1", ref, work / "certs", authfile)
        pull = skopeo_copy(ref, f"oci:{pulled}:v1", work / "certs", authfile)
        shutil.rmtree(pulled)
        times.append(push + pull)
    return statistics.median(times)


@contextmanager
def registry_alone(work: Path, tls: dict[str, str], htpasswd: str | None):
    """The registry binary with its image's config, TLS of its own, and its own htpasswd or none."""
    root = Path(tempfile.mkdtemp(dir=work, prefix="alone-"))
    (root / "tls.crt").write_text(tls["tls.crt"])
    (root / "tls.key").write_text(tls["tls.key"])
    (root / "config.yml").write_text(IMAGE_CONFIG)
    env = {
        "PATH": os.environ["PATH"],
        **IMAGE_ENV,
        "REGISTRY_LOG_LEVEL": "error",
        "REGISTRY_HTTP_DEBUG_ADDR": "",
        "REGISTRY_HTTP_ADDR": f"{CLUSTER_IP}:{PORT}",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(root / "data"),
        "REGISTRY_HTTP_TLS_CERTIFICATE": str(root / "tls.crt"),
        "REGISTRY_HTTP_TLS_KEY": str(root / "tls.key"),
    }
    if htpasswd is not None:
        (root / "htpasswd").write_text(htpasswd)
        env |= {
            "REGISTRY_AUTH": "htpasswd",
            "REGISTRY_AUTH_HTPASSWD_REALM": "bench",
            "REGISTRY_AUTH_HTPASSWD_PATH": str(root / "htpasswd"),
        }
    process = subprocess.Popen(
        [REGISTRY_BINARY, "serve", str(root / "config.yml")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        eventually(
            lambda: socket.create_connection((CLUSTER_IP, PORT), timeout=1).close() is None,
            "the registry to listen",
            15,
            every=0.05,
            ignoring=(OSError,),
        )
        yield
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def pod(source: PodSource, work: Path, label: str):
    registry = Registry(source, work / label).start()
    try:
        yield
    finally:
        registry.stop()


def without_auth(source: PodSource) -> PodSource:
    """The pod with nginx's password checks taken out: the proxy's hop and TLS alone."""
    maps = {name: dict(data) for name, data in source.config_maps.items()}
    text = maps["registry-proxy"]["nginx.conf"]
    kept = [line for line in text.splitlines(keepends=True) if "auth_basic" not in line]
    maps["registry-proxy"]["nginx.conf"] = "".join(kept)
    assert maps["registry-proxy"]["nginx.conf"] != text
    return dataclasses.replace(source, config_maps=maps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--layer-mib", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--costs", default="4,5,8,10,12")
    args = parser.parse_args()
    if not shutil.which("skopeo"):
        sys.exit("skopeo is missing: apt-get install skopeo")
    for binary, how in ((REGISTRY_BINARY, "tests/build_registry.sh"), (NGINX_BINARY, "tests/build_nginx.sh")):
        if not Path(binary).exists():
            sys.exit(f"{binary} is missing: bash {how}")

    run = run_stack({"serviceCidr": "127.0.0.0/8", "clusterIp": CLUSTER_IP, "nodeTrust": "cluster"})
    assert run.error is None, run.error
    user, password = run.outputs["username"], run.outputs["password"]
    source = PodSource.from_run(run)
    work = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    try:
        image = work / "image"
        write_image(image, "v1", layers=args.layers, layer_bytes=int(args.layer_mib * 1024 * 1024))
        (work / "certs").mkdir()
        (work / "certs" / "ca.crt").write_text(source.secrets["registry-tls"]["ca.crt"])
        authfile = work / "auth.json"
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        authfile.write_text(json.dumps({"auths": {f"{CLUSTER_IP}:{PORT}": {"auth": token}}}))
        tls = source.secrets["registry-tls"]

        rows = []
        with registry_alone(work, tls, None):
            base = measure(work, image, None, args.repeats, "noauth")
        rows.append(("registry alone: TLS, no auth", base))
        for cost in [int(c) for c in args.costs.split(",")]:
            line = f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()}\n"
            with registry_alone(work, tls, line):
                seconds = measure(work, image, authfile, args.repeats, f"cost{cost}")
            rows.append((f"registry alone: TLS + its htpasswd, bcrypt cost {cost}", seconds))
        with pod(without_auth(source), work, "hop"):
            rows.append(
                ("the pod, nginx without auth_basic: TLS + the hop", measure(work, image, None, args.repeats, "hop"))
            )
        with pod(source, work, "pod"):
            rows.append(
                (
                    f"the pod as rendered: nginx TLS + htpasswd (cost {BCRYPT_COST}) -> registry (ours)",
                    measure(work, image, authfile, args.repeats, "pod"),
                )
            )

        skopeo = subprocess.run(["skopeo", "--version"], capture_output=True, text=True).stdout.split()[-1]
        nginx = subprocess.run([NGINX_BINARY, "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
        print(
            f"push then pull of {args.layers} x {args.layer_mib:g} MiB layers, median of {args.repeats}, "
            f"skopeo {skopeo}, registry {Path(REGISTRY_BINARY).name}, nginx {nginx}"
        )
        print()
        print("| registry | push + pull (s) | vs no auth |")
        print("|---|---|---|")
        for label, seconds in rows:
            print(f"| {label} | {seconds:.2f} | {seconds / base:.2f}x |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
