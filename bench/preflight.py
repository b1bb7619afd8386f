#!/usr/bin/env python3
"""What the cluster check before anything is created (registry/cluster/checks.py) adds to every preview and up.

Starts the engine tests' loopback control plane (tests/support/engine/cluster.py; the
toolchain must be built: tests/engine/toolchain.sh), fills it with namespaces
and Services like a busy cluster, and times `check_cluster` as the program
calls it, once per fresh interpreter as each `pulumi preview` or `up` runs the
program: the kubeconfig loaded, every read made, for a stack with pull-secret
namespaces, service-account patches, discovery and a fixed clusterIp; and,
apart, importing registry.cluster and the Kubernetes client.

    python3 bench/preflight.py [--namespaces 5] [--services 300] [--repeats 10]

No root, no network beyond loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.engine import toolchain_dir
from tests.support.engine.cluster import ControlPlane

SERVICE_CIDR = "127.0.12.0/22"


ONE_RUN = """
import json, sys, time
sys.path.insert(0, {root!r})
started = time.perf_counter()
from registry.cluster import checks, kubernetes
from tests.support.stack import settings_from
imported = time.perf_counter()
settings = settings_from(json.loads({config!r}))
assert checks.check_cluster(settings, kubernetes.connect(settings)) is None
print(json.dumps([imported - started, time.perf_counter() - imported]))
"""


def one_run(config: dict) -> tuple[float, float]:
    """(import, check) seconds in a fresh interpreter, as each `pulumi preview` or `up` runs the program."""
    code = ONE_RUN.format(root=str(Path(__file__).resolve().parent.parent), config=json.dumps(config))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return tuple(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=5, help="pull-secret namespaces in the stack")
    parser.add_argument("--services", type=int, default=300, help="other Services in the cluster")
    parser.add_argument("--repeats", type=int, default=10)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        cluster = ControlPlane(toolchain_dir(), Path(work) / "cluster", service_cidr=SERVICE_CIDR)
        try:
            cluster.start()
            os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
            namespaces = [f"team-{n}" for n in range(options.namespaces)]
            for namespace in namespaces:
                cluster.api.create(
                    "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
                )
            for n in range(options.services):
                namespace = namespaces[n % len(namespaces)]
                cluster.api.create(
                    f"/api/v1/namespaces/{namespace}/services",
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "metadata": {"name": f"svc-{n}", "namespace": namespace},
                        "spec": {"selector": {"app": f"svc-{n}"}, "ports": [{"port": 80}]},
                    },
                )
            for namespace in namespaces:  # the default ServiceAccounts the patch check reads
                cluster.wait_for(
                    lambda ns=namespace: cluster.api.find(f"/api/v1/namespaces/{ns}/serviceaccounts/default"),
                    f"{namespace}'s default ServiceAccount",
                )

            config = {
                "serviceCidr": SERVICE_CIDR,
                "clusterIp": "127.0.12.50",
                "pullSecretNamespaces": namespaces,
                "serviceAccountPullSecret": True,
            }
            runs = [one_run(config) for _ in range(options.repeats)]
            checks = [check for _, check in runs]
            print(
                json.dumps(
                    {
                        "namespaces": options.namespaces,
                        "services": options.services,
                        "import_median_s": round(statistics.median(imported for imported, _ in runs), 3),
                        "check_median_s": round(statistics.median(checks), 3),
                        "check_max_s": round(max(checks), 3),
                    }
                )
            )
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
