"""One remote command per node: trust the registry's CA and resolve its name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_command as command

from .node_script import NodeTrustParams, create_script, delete_script, remote_command
from .settings import Node, Settings


def node_params(settings: Settings, node: Node) -> NodeTrustParams:
    return NodeTrustParams(hostname=settings.hostname, port=settings.port, runtime=node.runtime)


@dataclass
class NodeTrustArgs:
    settings: Settings
    ca_cert_pem: pulumi.Input[str]
    cluster_ip: pulumi.Input[str]
    # The Service: the clusterIP must exist before a node points its name at it.
    service: pulumi.Resource


class NodeTrust(pulumi.ComponentResource):
    commands: dict[str, command.remote.Command]

    def __init__(self, name: str, args: NodeTrustArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("registry:index:NodeTrust", name, None, opts)
        settings = args.settings
        self.commands = {}
        for node in settings.nodes:
            params = node_params(settings, node)
            user = node.user
            create = pulumi.Output.all(args.cluster_ip, args.ca_cert_pem).apply(
                lambda values, params=params, user=user: remote_command(
                    create_script(params, values[0], values[1]), user
                )
            )
            delete = remote_command(delete_script(params), user)
            self.commands[node.name] = command.remote.Command(
                f"{name}-{node.name}",
                connection=command.remote.ConnectionArgs(
                    host=node.host,
                    port=node.port,
                    user=node.user,
                    private_key=settings.ssh_private_key,
                    dial_error_limit=5,
                    per_dial_timeout=30,
                ),
                create=create,
                delete=delete,
                # pulumi-command (remote/commandController.go) runs `create`
                # again on an update when no `update` is given, and `delete`
                # from the stored old inputs. So whatever decides what delete
                # must undo (name, port, user) forces a replacement, in which
                # the old delete runs; everything else is an idempotent re-run.
                triggers=[delete],
                # The previous stdout would land in the environment; nothing here needs it.
                add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[args.service],
                    # Old and new write the same paths: the old one must be gone
                    # before the new one writes, or its delete would undo the new one.
                    delete_before_replace=True,
                ),
            )
        self.register_outputs({})
