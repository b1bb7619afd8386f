"""Where tools find the cluster's registry: KEP-1755's `local-registry-hosting` ConfigMap.

Tilt, Skaffold and ctlptl read `localRegistryHosting.v1` from this ConfigMap in
kube-public and push there instead of asking the user.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from .names import DISCOVERY_CONFIGMAP, DISCOVERY_NAMESPACE

DATA_KEY = "localRegistryHosting.v1"
HELP = (
    "A private registry made by a Pulumi program. To push from this machine, run "
    "`pulumi stack output workstationSetup | sudo sh` in its stack, then its `loginCommand` output."
)


@dataclass
class DiscoveryArgs:
    # hostname:port, as nodes' runtimes pull.
    endpoint: str
    # The Service's name in cluster DNS with the port, as in-cluster builders push.
    cluster_endpoint: str
    # A node's address and the node port, from outside the cluster; None without nodes.
    external_endpoint: str | None = None


def hosting_document(args: DiscoveryArgs) -> str:
    """The `localRegistryHosting.v1` YAML: each value a JSON string, which YAML reads as is."""
    fields = {}
    if args.external_endpoint:
        # From outside the cluster: a node's address and the node port.
        fields["host"] = args.external_endpoint
    fields["hostFromContainerRuntime"] = args.endpoint
    fields["hostFromClusterNetwork"] = args.cluster_endpoint
    fields["help"] = HELP
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in fields.items())


class Discovery(pulumi.ComponentResource):
    def __init__(self, name: str, args: DiscoveryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("registry:index:Discovery", name, None, opts)
        k8s.core.v1.ConfigMap(
            f"{name}-local-registry-hosting",
            metadata={"name": DISCOVERY_CONFIGMAP, "namespace": DISCOVERY_NAMESPACE},
            data={DATA_KEY: hosting_document(args)},
            # The name is fixed by the KEP: a replacement must free it first.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.register_outputs({})
