#!/usr/bin/env python3
"""How long the user's day takes on real nodes: up, a node's join, the first kubelet pull, destroy.

Runs the committed dev stack (Pulumi.dev.yaml) through the real Pulumi CLI and
pulumi-kubernetes against the real API server, controller manager and
scheduler, on real nodes (tests/support/real_node.py: kubelet, kube-proxy,
containerd and runc, with the images tests/support/images.py makes), and measures:

- up: `pulumi up` on a new stack, from start to return, which is after the
  registry's pod is Ready (kubelet's probes) and the node's DaemonSet pod
  has run the node program;
- first pull: a pod of an image pushed to the registry, from its creation
  to its end (kubelet pulls it by name through containerd, with the CA and
  hosts entry the DaemonSet installed);
- join: from a second node's kubelet start to its DaemonSet pod Ready;
- destroy: `pulumi destroy`, from start to return, after every node is given back.

    python3 bench/real_node.py [--runs 3]

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

from tests.engine.test_real_node import NAMESPACE, TRUST_NAMESPACE, World, configuration, ready
from tests.support.engine import toolchain_dir
from tests.support.engine.project import EngineProject
from tests.support.engine.stack import Stack
from tests.support.images import build
from tests.support.real_node import node_address, real_cluster
from tests.support.stack import FakeCluster


def measure(bin_dir: Path) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="bench-real-node-"))
    root.chmod(0o755)
    images = build(root / "images")
    timings: dict[str, float] = {}
    with real_cluster(bin_dir, root, images) as real:
        real.nodes["node-1"].join()
        project = EngineProject(bin_dir, root / "main", real.cluster.kubeconfig)
        project.create_stack()
        stack = Stack(
            project,
            cluster=FakeCluster(
                missing={NAMESPACE, TRUST_NAMESPACE}, ranges=["10.96.0.0/12"], addresses={"node-1": node_address(1)}
            ),
        )
        stack.configure(**configuration(images))
        world = World(root, real.cluster, real.workstation, real.nodes, images, stack)
        started = time.monotonic()
        world.up()
        timings["up"] = time.monotonic() - started
        outputs = project.outputs(show_secrets=True)
        real.workstation.inside("sh", stdin=outputs["workstationSetup"])
        real.workstation.inside(
            "skopeo",
            "copy",
            "--dest-creds",
            f"admin:{outputs['password']}",
            f"oci:{images['hello'].layout}:v1",
            f"docker://{outputs['externalEndpoints'][0]}/hello:v1",
            timeout=180,
        )
        started = time.monotonic()
        world.run_pod("hello")
        timings["first pull"] = time.monotonic() - started
        joined = real.nodes["node-2"].join()
        while not any(p["spec"].get("nodeName") == "node-2" and ready(p) for p in world.pods(TRUST_NAMESPACE)):
            time.sleep(0.2)
        timings["join"] = time.monotonic() - joined
        world.cluster.api.delete("/api/v1/namespaces/default/pods/hello")
        started = time.monotonic()
        assert project.destroy().code == 0
        timings["destroy"] = time.monotonic() - started
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    bin_dir = toolchain_dir()
    results = [measure(bin_dir) for _ in range(runs)]
    print(f"{runs} runs, median (min-max), seconds:")
    for key in results[0]:
        values = [r[key] for r in results]
        print(f"  {key:11} {statistics.median(values):5.1f} ({min(values):.1f}-{max(values):.1f})")


if __name__ == "__main__":
    main()
