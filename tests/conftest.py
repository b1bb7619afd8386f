"""The suite's layers, one folder each, and a pytest marker of the same name:

  unit    the program under Pulumi's mocks, the config, the node program's
          parts in a temporary folder, the lint gate: seconds, no root
  node    the node program over real OpenSSH in simulated nodes: root
  e2e     the real registry, skopeo, containerd and SeaweedFS with what the
          program made: root
  engine  the real Pulumi CLI and pulumi-kubernetes against a real control plane

`./test.sh --fast` runs the unit layer; `./test.sh` runs them all.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.constants import BASE_CONFIG
from tests.support.engine import REPORTED as ENGINE_UNAVAILABLE
from tests.support.stack import run_stack

LAYERS = ("unit", "node", "e2e", "engine")


def pytest_collection_modifyitems(items):
    """Each test is marked with the layer its folder names."""
    here = Path(__file__).resolve().parent
    for item in items:
        layer = Path(item.fspath).resolve().relative_to(here).parts[0]
        assert layer in LAYERS, f"{item.nodeid}: a test belongs in one of the layer folders {LAYERS}"
        item.add_marker(getattr(pytest.mark, layer))


@pytest.fixture
def three_node_run():
    """A fresh run of the program for each test, as the guide asks: no test sees another's state."""
    run = run_stack(BASE_CONFIG)
    assert run.error is None, run.error
    return run


def pytest_terminal_summary(terminalreporter):
    """Say which parts of the real chain the engine tests ran without, and why."""
    if ENGINE_UNAVAILABLE:
        terminalreporter.write_sep("-", "engine layer: not built, the Go module proxy does not serve them")
        for line in ENGINE_UNAVAILABLE:
            terminalreporter.write_line(line)
