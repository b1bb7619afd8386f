"""The simulated nodes themselves: whatever runs in one stays in it, so that the suite
leaves this machine as it found it."""

from __future__ import annotations

import os

import pytest


@pytest.mark.parametrize("folder", ["/srv", "/opt", "/root", "/home", "/etc", "/usr/local/bin", "/var/lib"])
def test_a_write_in_a_node_stays_in_the_node(nodes, folder):
    node = nodes.start()
    name = f"registry-node-test-{os.getpid()}"
    result = node.ssh(f"mkdir -p {folder}/{name} && echo inside > {folder}/{name}/notes.txt && cat {folder}/{name}/notes.txt")
    assert result.returncode == 0 and result.stdout == "inside\n", result.stderr
    assert node.read(f"{folder}/{name}/notes.txt") == b"inside\n"
    assert not os.path.lexists(f"{folder}/{name}"), f"{folder}/{name} reached this machine"
