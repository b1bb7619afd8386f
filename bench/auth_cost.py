#!/usr/bin/env python3
"""What htpasswd auth and its bcrypt cost do to push and pull times.

Starts the real registry from the program's own Deployment (as the end-to-end
tests do), pushes a multi-layer image with skopeo and pulls it back, and
compares: the same TLS registry without auth, and with our htpasswd at
several bcrypt costs. The registry checks bcrypt on every request and caches
nothing, so the cost is paid per blob, per manifest, per HEAD.

    python3 bench/auth_cost.py [--layers 20] [--layer-mib 1] [--repeats 3]

Needs no root and no network beyond loopback; runs the registry tests/build_registry.sh builds
(the version the default image runs) and skopeo from Debian.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bcrypt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from registry.credentials import BCRYPT_COST
from tests.support.oci import write_image
from tests.support.registry_server import REGISTRY_BINARY, PodSource, Registry
from tests.support.stack import run_stack

CLUSTER_IP = "127.0.10.2"


def skopeo_copy(src: str, dest: str, cert_dir: Path, authfile: Path | None) -> float:
    args = ["skopeo", "copy", "--quiet", "--src-cert-dir", str(cert_dir), "--dest-cert-dir", str(cert_dir)]
    if authfile:
        args += ["--src-authfile", str(authfile), "--dest-authfile", str(authfile)]
    started = time.perf_counter()
    subprocess.run([*args, src, dest], check=True, capture_output=True)
    return time.perf_counter() - started


def measure(
    registry: Registry, work: Path, image: Path, authfile: Path | None, repeats: int, label: str
) -> list[float]:
    cert_dir = work / "certs"
    cert_dir.mkdir(exist_ok=True)
    (cert_dir / "ca.crt").write_text(registry.ca_pem)
    times = []
    for i in range(repeats):
        # A new repository each time: no layer is already there, as on a first push.
        ref = f"docker://{registry.host}:{registry.port}/bench/{label}-{i}:v1"
        pulled = work / f"pulled-{label}-{i}"
        push = skopeo_copy(f"oci:{image}:v1", ref, cert_dir, authfile)
        pull = skopeo_copy(ref, f"oci:{pulled}:v1", cert_dir, authfile)
        shutil.rmtree(pulled)
        times.append(push + pull)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--layer-mib", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--costs", default="4,5,8,10,12")
    args = parser.parse_args()
    if not shutil.which("skopeo"):
        sys.exit("skopeo is missing: apt-get install skopeo")
    if not Path(REGISTRY_BINARY).exists():
        sys.exit(f"{REGISTRY_BINARY} is missing: bash tests/build_registry.sh")

    run = run_stack({"serviceCidr": "127.0.0.0/8", "clusterIp": CLUSTER_IP})
    assert run.error is None, run.error
    user, password = run.outputs["username"], run.outputs["password"]
    work = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    try:
        image = work / "image"
        write_image(image, "v1", layers=args.layers, layer_bytes=int(args.layer_mib * 1024 * 1024))
        authfile = work / "auth.json"
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        authfile.write_text(json.dumps({"auths": {f"{CLUSTER_IP}:5000": {"auth": token}}}))
        registry = Registry(PodSource.from_run(run), work / "registry")
        htpasswd_path = next(e for e in registry.container["env"] if e["name"] == "REGISTRY_AUTH_HTPASSWD_PATH")[
            "value"
        ]

        rows = []
        registry.start(without=("REGISTRY_AUTH",))
        try:
            base = statistics.median(measure(registry, work, image, None, args.repeats, "noauth"))
        finally:
            registry.stop()
        rows.append(("TLS, no auth", base))
        for cost in [int(c) for c in args.costs.split(",")]:
            line = f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()}\n"
            registry.start(files={htpasswd_path: line})
            try:
                seconds = statistics.median(measure(registry, work, image, authfile, args.repeats, f"cost{cost}"))
            finally:
                registry.stop()
            label = f"TLS + htpasswd, bcrypt cost {cost}" + (" (ours)" if cost == BCRYPT_COST else "")
            rows.append((label, seconds))

        skopeo = subprocess.run(["skopeo", "--version"], capture_output=True, text=True).stdout.split()[-1]
        print(
            f"push then pull of {args.layers} x {args.layer_mib:g} MiB layers, median of {args.repeats}, "
            f"skopeo {skopeo}, registry {Path(REGISTRY_BINARY).name}"
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
