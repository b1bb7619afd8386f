"""The node layer's shared fixtures: simulated nodes (tests/support/nodes.py),
and one run of the program under mocks whose node commands are sent to them.
Module-scoped: each test module gets its own nodes and its own run."""

import pytest

from tests.support.nodes import simulated_nodes
from tests.support.trust import program_run


@pytest.fixture(scope="module")
def nodes():
    with simulated_nodes() as factory:
        yield factory


@pytest.fixture(scope="module")
def program(nodes):
    return program_run(nodes.private_key)
