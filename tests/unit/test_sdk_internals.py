"""The canary for a Pulumi SDK upgrade: every internal the mock harness and
registry/config/load.py's config_keys() use is still where it was."""

import importlib

import pytest

from tests.support.sdk import INTERNALS


@pytest.mark.parametrize("module, name", INTERNALS, ids=[f"{m}.{n}" for m, n in INTERNALS])
def test_each_sdk_internal_the_harness_uses_is_still_there(module, name):
    assert hasattr(importlib.import_module(module), name), f"{module}.{name} moved: see tests/support/sdk.py"
