import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.engine import REPORTED as ENGINE_UNAVAILABLE  # noqa: E402
from tests.stack import run_stack  # noqa: E402

THREE_NODES = [
    {"name": "cp", "host": "192.168.56.10"},
    {"name": "worker-1", "host": "192.168.56.11", "port": 2222},
    {"name": "worker-2", "host": "worker-2.example.internal", "user": "ubuntu"},
]

BASE_CONFIG = {
    "clusterIp": "10.96.0.50",
    "users": ["admin", "ci"],
    "pullSecretNamespaces": ["default", "apps"],
    "nodes": THREE_NODES,
    "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\ntest-key-not-real\n-----END OPENSSH PRIVATE KEY-----\n",
}


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
