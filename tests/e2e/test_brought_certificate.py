"""A server certificate the user brings, served by the real registry: a node trusts
it through the user's CA and pushes and pulls by name."""

from __future__ import annotations

import pytest

from tests.support.certs import brought_certificate
from tests.support.certs import brought_config as config
from tests.support.constants import CLUSTER_IP, COMMAND
from tests.support.nodes import NEEDED, simulated_nodes
from tests.support.oci import read_image, write_image
from tests.support.registry_server import REGISTRY_TOOL, pull_authfile, serving
from tests.support.stack import run_stack


@pytest.fixture(scope="module")
def own():
    return brought_certificate(CLUSTER_IP)


def test_a_node_pushes_by_name_to_the_real_registry_serving_the_users_certificate(own, tmp_path):
    with simulated_nodes({**NEEDED, **REGISTRY_TOOL, "skopeo": "skopeo"}) as factory:
        node = factory.start()
        run = run_stack(config(own, sshPrivateKey=factory.private_key,
                               nodes=[{"name": "n", "host": node.address, "port": node.port}]))
        assert run.error is None, run.error
        (command,) = run.of_type(COMMAND)
        result = node.run_command(command.inputs, "create")
        assert result.returncode == 0, result.stderr
        auth = pull_authfile(run, tmp_path / "auth.json")
        write_image(tmp_path / "image", "v1")
        with serving(run, tmp_path / "registry"):
            pushed = node.inside("skopeo", "--command-timeout", "60s", "copy", "--dest-authfile", str(auth),
                                 f"oci:{tmp_path / 'image'}:v1", "docker://image-registry:5000/own/app:1", check=False,
                                 timeout=120)
            assert pushed.returncode == 0, pushed.stderr
            pulled = node.inside("skopeo", "--command-timeout", "60s", "copy", "--src-authfile", str(auth),
                                 "docker://image-registry:5000/own/app:1", f"oci:{tmp_path / 'out'}:v1", check=False,
                                 timeout=120)
        assert pulled.returncode == 0 and read_image(tmp_path / "out")[0] == read_image(tmp_path / "image")[0], pulled.stderr
