"""A server certificate the user brings, served by the real registry: a node trusts
it through the user's CA and pushes and pulls by name."""

from __future__ import annotations

import pytest

from tests.support.certs import brought_certificate
from tests.support.certs import brought_config as config
from tests.support.constants import CLUSTER_IP
from tests.support.deployed import deployed
from tests.support.nodes import NEEDED, simulated_nodes
from tests.support.oci import read_image, write_image
from tests.support.registry_server import REGISTRY_TOOL


@pytest.fixture(scope="module")
def own():
    return brought_certificate(CLUSTER_IP)


def test_a_node_pushes_by_name_to_the_real_registry_serving_the_users_certificate(own, tmp_path):
    with simulated_nodes({**NEEDED, **REGISTRY_TOOL, "skopeo": "skopeo"}) as factory:
        node = factory.start()
        write_image(tmp_path / "image", "v1")
        with deployed(tmp_path, factory, [node], config(own)) as it:
            auth = it.login
            pushed = node.inside("skopeo", "--command-timeout", "60s", "copy", "--dest-authfile", str(auth),
                                 f"oci:{tmp_path / 'image'}:v1", "docker://image-registry:5000/own/app:1", check=False,
                                 timeout=120)
            assert pushed.returncode == 0, pushed.stderr
            pulled = node.inside("skopeo", "--command-timeout", "60s", "copy", "--src-authfile", str(auth),
                                 "docker://image-registry:5000/own/app:1", f"oci:{tmp_path / 'out'}:v1", check=False,
                                 timeout=120)
        assert pulled.returncode == 0 and read_image(tmp_path / "out")[0] == read_image(tmp_path / "image")[0], pulled.stderr
