"""Read and check the stack's config once, before any resource exists.

Every key is a field of Settings (registry/config/model.py); each is checked on
its own, then the rules of registry/config/rules.py check them together. A
failed key holds its default while the rules run, so every problem is reported
at once. A bad value stops the program with one message that names the key,
the value and what would be accepted (pulumi.RunError prints it without a
traceback). Nothing else in the program calls `pulumi.Config`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import pulumi

from .keys import keys
from .model import Settings
from .rules import RULES, Parsed
from .types import KubeAccess, SettingsError
from .validators import Problems, failed

CONFIG_NAMESPACE = "registry"
KEYS = frozenset(key.name for _, key in keys(Settings))
SECRET_KEYS = tuple(key.name for _, key in keys(Settings) if key.secret)


def load_settings() -> Settings:
    """Read the `registry:` config of the current stack."""
    config = pulumi.Config(CONFIG_NAMESPACE)
    secrets = {key: config.get_secret(key) for key in SECRET_KEYS}
    settings = parse_settings(config.get, {k: v for k, v in secrets.items() if v is not None}, keys=config_keys())
    provider = pulumi.Config("kubernetes")
    kube = KubeAccess(provider.get("kubeconfig"), provider.get("context"), provider.get("cluster"))
    return dataclasses.replace(settings, kube=kube)


def config_keys() -> set[str] | None:
    """The keys set in the `registry:` namespace, or None when the SDK does not say.

    The SDK has no call that lists config; the language host hands the stack's
    config to the program as this map (pulumi/runtime/config.py), or as
    PULUMI_CONFIG. Should a later SDK move it, the unknown-key check is skipped
    with a warning rather than every `pulumi up` failing.
    """
    try:
        from pulumi.runtime import config as runtime_config

        every = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    except Exception as error:  # an SDK whose internals moved
        pulumi.log.warn(f"cannot list the stack's config ({error!r}); unknown registry: keys are not checked")
        return None
    prefix = CONFIG_NAMESPACE + ":"
    return {key[len(prefix) :].removeprefix("config:") for key in every if key.startswith(prefix)}


def unknown_keys(given: set[str]) -> Problems:
    by_lower = {k.lower(): k for k in KEYS}
    problems = []
    for key in sorted(given - KEYS):
        close = difflib.get_close_matches(key.lower(), by_lower, n=1, cutoff=0.6)
        hint = f"did you mean registry:{by_lower[close[0]]}? " if close else ""
        problems.append(f"registry:{key} is not a setting of this program; {hint}settings: {', '.join(sorted(KEYS))}")
    return problems


def parse_settings(
    get: Callable[[str], str | None],
    secrets: Mapping[str, pulumi.Output[str]] | None = None,
    keys: set[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from raw config strings; `get(key)` returns None when unset.

    `secrets` holds the secret keys that are set, as outputs; `get` still gives
    their text to the checks, which never show it. `keys` are the keys the
    stack sets, checked against the model. Defaults repeat those in Pulumi.yaml
    because the CLI alone applies those.
    """
    secrets = secrets or {}
    problems = unknown_keys(keys or set())

    def plain(key: str) -> str | None:
        value = get(key)
        return None if value is None or value == "" else value

    values = _checked(get, plain, secrets, problems)
    # A copy, read-only: no rule sees what another decides.
    parsed = Parsed(MappingProxyType(dict(values)), plain, os.environ if environ is None else environ)
    decided: dict[str, str] = {}
    for rule in RULES:
        outcome = rule(parsed)
        problems += outcome.problems
        for attribute in outcome.changes:
            # Order-free: a setting is decided by one rule at most, never by two in turn.
            assert attribute not in decided, f"{rule.__name__} and {decided[attribute]} both decide {attribute}"
            decided[attribute] = rule.__name__
        values.update(outcome.changes)
    if problems:
        raise SettingsError("invalid config:\n  " + "\n  ".join(problems))
    return Settings(**values)


def _checked(
    get: Callable[[str], str | None],
    plain: Callable[[str], str | None],
    secrets: Mapping[str, pulumi.Output[str]],
    problems: Problems,
) -> dict[str, Any]:
    """Every key's value by attribute, checked on its own; a failed key holds its default."""
    values: dict[str, Any] = {}
    for attribute, key in keys(Settings):
        raw = get(key.name) if not key.blank_is_unset else plain(key.name)
        value = copy.deepcopy(key.default) if raw is None else key.check(raw, key.name, problems)
        if failed(value):
            value = copy.deepcopy(key.default)
        values[attribute] = secrets.get(key.name) if key.secret else value
    return values
