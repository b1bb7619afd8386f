"""Every use of the Pulumi SDK's internals, in one place.

The mock harness (tests/support/stack.py) runs __main__.py whole, as the
language host does, and reads the stack's outputs and the wire form of each
registration; the SDK's public `pulumi.runtime.test` runs a function, not a
program. What it needs beyond the public API is here. requirements-test.txt
pins `pulumi` to the release these were read from, and
tests/unit/test_sdk_internals.py imports each by name, so that an upgrade
that moves one fails there first, naming it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

# (module, name) of each internal used here and in registry/config/load.py's config_keys().
INTERNALS = (
    ("pulumi.runtime.rpc", "_special_secret_sig"),
    ("pulumi.runtime.rpc", "_special_sig_key"),
    ("pulumi.runtime.rpc", "deserialize_properties"),
    ("pulumi.runtime.mocks", "MockMonitor"),
    ("pulumi.runtime.settings", "ROOT"),
    ("pulumi.runtime.settings", "SETTINGS"),
    ("pulumi.runtime.settings", "get_root_resource"),
    ("pulumi.runtime.stack", "run_pulumi_func"),
    ("pulumi.runtime.sync_await", "_sync_await"),
    ("pulumi.runtime.config", "CONFIG"),
    ("pulumi.runtime.config", "get_config_env"),
)

# How a secret travels on the wire: {SIG_KEY: SECRET_SIG, "value": ...}.
SECRET_SIG = rpc._special_secret_sig
SIG_KEY = rpc._special_sig_key
MockMonitor = mocks.MockMonitor
deserialize_properties = rpc.deserialize_properties


def new_program() -> None:
    """Forget the previous run's stack resource, and outputs made outside this run,
    which belong to another event loop (as pulumi.runtime.test does)."""
    settings.ROOT.set(None)


def forget_other_runs() -> None:
    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()


def root_resource() -> Any:
    return settings.get_root_resource()


def run_program(program: Callable[[], Any]) -> None:
    """Run `program` as the language host runs __main__.py, until every registration is done."""
    _sync_await(run_pulumi_func(program))


def wait(awaitable: Awaitable[Any]) -> Any:
    return _sync_await(awaitable)
