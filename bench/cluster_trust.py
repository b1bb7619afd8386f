#!/usr/bin/env python3
"""How long nodeTrust cluster takes: a node's join to a pull by name, and destroy for N nodes.

Runs the committed dev stack (Pulumi.dev.yaml) through the real Pulumi CLI and
pulumi-kubernetes against the real API server, controller manager and
scheduler, with its DaemonSet's pods on simulated nodes through TestKubelet
(tests/support/engine/trust_world.py, as the engine tests do), and measures:

- join: from a new Node object's creation to the first pull by name that
  works on that node (its pod scheduled, its init container run, TLS verified
  through the node's trust store, the name through its /etc/hosts);
- destroy: `pulumi destroy`, from start to return, which is after every
  node's pod has given its node back.

    python3 bench/cluster_trust.py [--nodes 2 8] [--joins 3]

Needs root, the engine toolchain (tests/engine/toolchain.sh) and what .ci/run installs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.engine import toolchain_dir
from tests.support.engine.trust_world import ENDPOINT, IMAGE, trust_world
from tests.support.nodes import diff
from tests.support.oci import write_image


def measure(bin_dir: Path, count: int, joins: int) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="bench-cluster-trust-"))
    root.chmod(0o755)
    with trust_world(bin_dir, root) as world:
        for index in range(count):
            world.join(f"node-{index}")
        world.configure()
        started = time.monotonic()
        up = world.project.up()
        assert up.code == 0, up.text
        up_seconds = time.monotonic() - started
        world.password = world.project.outputs(show_secrets=True)["password"]
        world.start_registry()
        layout = root / "layout"
        write_image(layout, "v1", layers=1, seed=b"bench")
        first = world.nodes["node-0"]
        push = first.inside(
            "skopeo",
            "copy",
            "--dest-creds",
            f"admin:{world.password}",
            f"oci:{layout}:v1",
            f"docker://{ENDPOINT}/{IMAGE}",
            check=False,
            timeout=120,
        )
        assert push.returncode == 0, push.stderr
        join_seconds = []
        for index in range(joins):
            name = f"joined-{index}"
            created = world.join(name)
            while world.pull(world.nodes[name], timeout=30).returncode != 0:
                assert time.monotonic() - created < 120, world.kubelet.logs()
                time.sleep(0.1)
            join_seconds.append(time.monotonic() - created)
        nodes = len(world.nodes)
        started = time.monotonic()
        destroy = world.project.destroy()
        destroy_seconds = time.monotonic() - started
        assert destroy.code == 0, destroy.text
        for name, node in world.nodes.items():
            assert diff(world.before[name], node.snapshot()) == [], f"{name} was not given back"
    return {"nodes": nodes, "up": up_seconds, "joins": join_seconds, "destroy": destroy_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--joins", type=int, default=3)
    args = parser.parse_args()
    bin_dir = toolchain_dir()
    print("| nodes at destroy | up | node join to pull by name (median, max) | destroy |")
    print("|---|---|---|---|")
    runs = [(count, 0) for count in args.nodes] + [(min(args.nodes), args.joins)]
    for count, joins in runs:
        # Nodes that join are measured on their own run, since destroy then covers them too.
        result = measure(bin_dir, count, joins)
        times = result["joins"]
        join_text = f"{statistics.median(times):.1f} s, {max(times):.1f} s ({len(times)} joins)" if times else "-"
        print(f"| {result['nodes']} | {result['up']:.1f} s | {join_text} | {result['destroy']:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
