#!/usr/bin/env python3
"""What a garbage collection costs the people who push: how long the registry is
read-only, and what a push meets while it is.

The real registry (tests/build_registry.sh, the default image's version) runs as
the program's Deployment runs it (registry_serve.sh, its grace period and drain
as the pod spec gives them), and the CronJob's exact command runs beside it on
the same volume (tests/support/registry_server.py). The volume holds `--images` images of
`--layers` x 1 MiB, half of them deleted. While the job runs, one client pushes a
new small image every half second. The timeline comes from the mode file the two
scripts talk through.

    python3 bench/gc_window.py [--images 40] [--layers 2]

Root is not needed; the registry listens on 127.0.10.1 (the tests' Service
address), so run it when no test suite is running.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.oci import write_image
from tests.support.registry_server import PodSource, Registry
from tests.support.stack import run_stack

CLUSTER_IP = "127.0.10.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()

    run = run_stack({"serviceCidr": "127.0.0.0/8", "clusterIp": CLUSTER_IP, "users": ["admin"]})
    assert run.error is None, run.error
    job_pod = run.one("kubernetes:batch/v1:CronJob").inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    source = PodSource.from_run(run)
    work = Path(tempfile.mkdtemp(prefix="registry-bench-gc-"))
    registry = Registry(source, work).start()
    certs = work / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_text(registry.ca_pem)
    token = base64.b64encode(f"admin:{run.outputs['password']}".encode()).decode()
    authfile = work / "auth.json"
    authfile.write_text(json.dumps({"auths": {f"{CLUSTER_IP}:5000": {"auth": token}}}))
    mode_file = registry.path("/var/lib/registry") / ".maintenance" / "mode"

    def skopeo(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["skopeo", "--command-timeout", "120s", *argv], capture_output=True, text=True)

    def push(layout: Path, name: str) -> subprocess.CompletedProcess:
        return skopeo(
            "copy",
            "--dest-authfile",
            str(authfile),
            "--dest-cert-dir",
            str(certs),
            f"oci:{layout}:v1",
            f"docker://{CLUSTER_IP}:5000/bench/{name}:1",
        )

    try:
        while not mode_file.exists() or mode_file.read_text().split()[0] != "rw":
            time.sleep(0.1)
        for i in range(args.images):
            write_image(work / f"image-{i}", "v1", layers=args.layers, layer_bytes=1024 * 1024)
            assert push(work / f"image-{i}", f"app-{i}").returncode == 0
        for i in range(0, args.images, 2):  # half of them deleted: collection has work to do
            inspect = skopeo(
                "inspect",
                "--authfile",
                str(authfile),
                "--cert-dir",
                str(certs),
                f"docker://{CLUSTER_IP}:5000/bench/app-{i}:1",
            )
            digest = json.loads(inspect.stdout)["Digest"]
            subprocess.run(
                [
                    "curl",
                    "-sf",
                    "--cacert",
                    str(certs / "ca.crt"),
                    "-u",
                    f"admin:{run.outputs['password']}",
                    "-X",
                    "DELETE",
                    f"https://{CLUSTER_IP}:5000/v2/bench/app-{i}/manifests/{digest}",
                ],
                check=True,
            )
        write_image(work / "small", "v1", layers=1, layer_bytes=64 * 1024)

        timeline: list[tuple[float, str]] = []
        pushes: list[tuple[float, float, bool]] = []
        stop = threading.Event()

        def pusher() -> None:
            n = 0
            while not stop.is_set():
                started = time.monotonic()
                result = push(work / "small", f"during-{n}")
                pushes.append((started, time.monotonic() - started, result.returncode == 0))
                n += 1
                time.sleep(0.5)

        collector = Registry(source, work, address="127.0.0.1", port=free_port(), pod=job_pod, name="job")
        start = time.monotonic()
        collector.start(wait=False)
        thread = threading.Thread(target=pusher)
        thread.start()
        last = ""
        while collector.process.poll() is None:
            words = mode_file.read_text().split()
            now = words[0] if words else ""
            if now != last:
                timeline.append((time.monotonic() - start, now))
                last = now
            time.sleep(0.05)
        end = time.monotonic() - start
        time.sleep(1)
        stop.set()
        thread.join()
        collector.stop()
        status = collector.process.returncode
    finally:
        registry.stop()

    print(f"images {args.images} x {args.layers} MiB, half deleted; job exit {status}; job ran {end:.1f} s")
    for at, mode in timeline:
        print(f"  {at:6.1f} s  mode {mode}")
    switching = next(t for t, m in timeline if m == "switching")
    back = [t for t, m in timeline if m == "rw" and t > switching]
    print(
        f"registry not Ready (switching, read-only, switching back): {back[0] - switching:.1f} s"
        if back
        else "never back"
    )
    refused = [d for s, d, ok in pushes if not ok]
    accepted = [d for s, d, ok in pushes if ok]
    print(
        f"pushes tried {len(pushes)}: refused {len(refused)}, accepted {len(accepted)}; "
        f"longest accepted {max(accepted, default=0):.1f} s, longest refused {max(refused, default=0):.1f} s"
    )


if __name__ == "__main__":
    main()
