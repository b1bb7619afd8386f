"""One remote command per node: trust the registry's CA and resolve its name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from .config.model import Bastion, Node
from .names import stack_identity
from .node_script import STATE_FORMAT, NodeTrustParams, create_script, delete_script, program, remote_command


@dataclass
class SshAccess:
    """The stack's SSH credentials: a key (and its passphrase), or none for
    the ssh-agent; and the jump host, if any."""

    private_key: pulumi.Input[str] | None = None
    passphrase: pulumi.Input[str] | None = None
    bastion: Bastion | None = None


def node_params(hostname: str, port: int, node: Node, stack: str) -> NodeTrustParams:
    return NodeTrustParams(hostname=hostname, port=port, stack=stack, entry=node.name, runtime=node.runtime)


def connection(ssh: SshAccess, node: Node) -> command.remote.ConnectionArgs:
    """How pulumi-command reaches a node: the stack's key (and its passphrase), or
    the ssh-agent of SSH_AUTH_SOCK, which pulumi-command reads itself
    (remote/connection.go); through the bastion when there is one; the node's
    host key checked when it is given, else not."""
    bastion = ssh.bastion
    return command.remote.ConnectionArgs(
        host=node.host,
        port=node.port,
        user=node.user,
        private_key=ssh.private_key,
        private_key_password=ssh.passphrase,
        host_key=node.host_key,
        proxy=command.remote.ProxyConnectionArgs(
            host=bastion.host,
            port=bastion.port,
            user=bastion.user,
            host_key=bastion.host_key,
            private_key=ssh.private_key,
            private_key_password=ssh.passphrase,
            dial_error_limit=5,
            per_dial_timeout=30,
        )
        if bastion
        else None,
        dial_error_limit=5,
        per_dial_timeout=30,
    )


def replacement_triggers(endpoint: str, node: Node, stack: str) -> list:
    """What the delete that undoes a create must know: a change to any of it is
    a replacement, in which the old delete runs with the old values.

    The endpoint and the owner (stack and node entry) find the node's record;
    host, port and user reach the node. The script's text is not here: a
    release that only rewords it updates the commands in place (pulumi-command
    re-runs create); one that changes what a node holds raises STATE_FORMAT.
    """
    return [STATE_FORMAT, endpoint, stack, node.name, node.host, node.port, node.user]


@dataclass
class NodeTrustArgs:
    nodes: Sequence[Node]
    hostname: str
    port: int
    ssh: SshAccess
    ca_cert_pem: pulumi.Input[str]
    cluster_ip: pulumi.Input[str]
    # The Service: the clusterIP must exist before a node points its name at it.
    service: pulumi.Resource


class NodeTrust(pulumi.ComponentResource):
    commands: dict[str, command.remote.Command]

    def __init__(self, name: str, args: NodeTrustArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("registry:index:NodeTrust", name, None, opts)
        stack = stack_identity()
        endpoint = f"{args.hostname}:{args.port}"
        self.commands = {}
        for node in args.nodes:
            params = node_params(args.hostname, args.port, node, stack)
            user = node.user
            create = pulumi.Output.all(args.cluster_ip, args.ca_cert_pem).apply(
                lambda values, params=params, user=user: remote_command(
                    create_script(params, values[0], values[1]), user
                )
            )
            self.commands[node.name] = command.remote.Command(
                f"{name}-{node.name}",
                connection=connection(args.ssh, node),
                create=create,
                delete=remote_command(delete_script(params), user),
                # pulumi-command (remote/commandOutputs.go) hands `stdin` to
                # every run, create and delete alike, from the same inputs as
                # the command line.
                stdin=program(),
                # pulumi-command (remote/commandController.go) runs `create`
                # again on an update when no `update` is given, and `delete`
                # from the stored old inputs; a trigger change replaces.
                triggers=replacement_triggers(endpoint, node, stack),
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
