"""No restructuring moves a resource: the program registers the same URNs,
under the same parents, with the same dependencies, as the release before it."""

import json

import pytest

from tests.support.stack import ROOT
from tests.support.urn_shapes import configurations, graph

FROZEN = json.loads((ROOT / "tests/fixtures/urns.json").read_text())


@pytest.mark.parametrize("name", list(FROZEN))
def test_every_resource_keeps_its_urn_parent_and_dependencies(name):
    config, cluster = configurations()[name]
    assert graph(config, cluster) == FROZEN[name]


def test_the_frozen_graph_covers_every_configuration():
    assert set(FROZEN) == set(configurations())
