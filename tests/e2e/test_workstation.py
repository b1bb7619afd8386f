"""`pulumi stack output workstationSetup | sudo sh` readies a workstation for its first push.

The workstation is a simulated machine (a mount namespace like the nodes'). The
registry listens where a workstation reaches it: a node's address and the node
port, the first external endpoint.
"""

import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.deployed import deployed
from tests.support.nodes import NEEDED, Node, simulated_nodes
from tests.support.oci import write_image
from tests.support.registry_server import REGISTRY_TOOL
from tests.support.stack import StackRun

TOOLS = {**NEEDED, **REGISTRY_TOOL, "skopeo": "skopeo"}


@dataclass
class World:
    """A workstation outside the cluster, the program's run, and an image to push."""

    run: StackRun
    workstation: Node
    layout: Path  # an OCI layout with the image


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("workstation")
    root.chmod(0o755)
    with simulated_nodes(TOOLS) as factory:
        node, workstation = factory.start(), factory.start()
        layout = root / "image"
        write_image(layout, "v1", layers=2)

        def node_port(run: StackRun) -> dict:
            """Where a workstation reaches the registry: the node's address and the node port."""
            return {"address": node.address, "port": run.one("kubernetes:core/v1:Service").inputs["spec"]["ports"][0]["nodePort"]}

        with deployed(root, factory, [node], create=False, where=node_port) as it:
            yield World(run=it.run, workstation=workstation, layout=layout)


def push(world, endpoint: str):
    return world.workstation.inside(
        "skopeo", "--command-timeout", "60s", "copy", f"oci:{world.layout}:v1", f"docker://{endpoint}/team/app:1.0",
        check=False, timeout=120,
    )


def test_the_setup_makes_the_first_push_work_with_the_login_it_printed(world):
    run, workstation = world.run, world.workstation
    endpoint = run.outputs["externalEndpoints"][0]
    before = push(world, endpoint)
    assert before.returncode != 0 and "x509" in before.stderr, "an untouched workstation does not trust the registry"

    setup = workstation.inside("sh", stdin=run.outputs["workstationSetup"], check=False)
    assert setup.returncode == 0, setup.stderr
    printed = setup.stdout.strip().splitlines()[-1]
    assert printed == run.outputs["loginCommand"]
    assert workstation.path(f"/etc/docker/certs.d/{endpoint}/ca.crt").read_text().strip() == run.outputs["caCertificate"].strip()

    # What the printed command does, with skopeo standing in for docker login.
    target, flag, username, stdin_flag = shlex.split(printed.split("| docker login ", 1)[1])
    assert (target, flag, stdin_flag) == (endpoint, "--username", "--password-stdin")
    login = workstation.inside("skopeo", "login", "--username", username, "--password-stdin", target,
                               stdin=run.outputs["password"], check=False)
    assert login.returncode == 0, login.stderr
    after = push(world, endpoint)
    assert after.returncode == 0, after.stderr


def test_the_setup_refuses_to_run_without_root(world):
    workstation = world.workstation
    result = workstation.inside("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh",
                                stdin=world.run.outputs["workstationSetup"], check=False)
    assert result.returncode != 0 and "run it as root" in result.stderr
