"""The node layer's shared fixtures: simulated nodes (tests/support/nodes.py),
and one run of the program under mocks whose node commands are sent to them.
Module-scoped: each test module gets its own nodes and its own run."""

import pytest

from tests.support.trust import node_factory, program_run


@pytest.fixture(scope="module")
def nodes():
    factory = node_factory()
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def program(nodes):
    return program_run(nodes.private_key)
