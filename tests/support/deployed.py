"""The end-to-end worlds' one deployment: the program run for some simulated nodes,
each node's create run over real SSH, and the registry's pod serving what the run made."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.constants import CLUSTER_IP, COMMAND
from tests.support.nodes import Node, NodeFactory
from tests.support.registry_server import Registry, login_authfile, pull_authfile, serving
from tests.support.stack import StackRun, run_stack


@dataclass
class Deployed:
    run: StackRun
    registry: Registry
    commands: dict[str, dict]  # node address -> its command's inputs
    authfile: Path  # the pull secret's .dockerconfigjson: a puller
    login: Path  # the login outputs' (username, password): a pusher


@contextmanager
def deployed(
    root: Path,
    factory: NodeFactory,
    nodes: Sequence[Node],
    config: dict | None = None,
    create: bool = True,
    where: Callable[[StackRun], dict] = lambda run: {},
) -> Iterator[Deployed]:
    """`nodes` listed in the config (each's create run unless `create` is false), `config` on top of
    a loopback Service range and CLUSTER_IP; `where` the registry listens, from the run (default: the
    Service's address). The registry stops at the end."""
    run = run_stack({
        "serviceCidr": "127.0.0.0/8",
        "clusterIp": CLUSTER_IP,
        "sshPrivateKey": factory.private_key,
        "nodes": [{"name": f"n{n.index}", "host": n.address, "port": n.port} for n in nodes],
        **(config or {}),
    })
    assert run.error is None, run.error
    commands = {command.inputs["connection"]["host"]: command.inputs for command in run.of_type(COMMAND)}
    for node in nodes if create else ():
        result = node.run_command(commands[node.address], "create")
        assert result.returncode == 0, result.stderr
    with serving(run, root / "registry", **where(run)) as registry:
        yield Deployed(run, registry, commands, pull_authfile(run, root / "auth.json"),
                       login_authfile(run, root / "login.json"))
