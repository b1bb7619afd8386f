"""A key is declared once: a `setting()` field of the settings model (registry/config/).
Pulumi.yaml's config block, docs/configuration.md's table, the keys the program
knows and which are secret all follow from it; the README's short table agrees."""

import dataclasses
import re

import pytest
import yaml

from registry.config import schema
from registry.config.keys import keys
from registry.config.load import KEYS, SECRET_KEYS
from registry.config.model import Settings
from tests.support.stack import ROOT

PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
DECLARED = {k: v for k, v in PROJECT["config"].items() if ":" not in k}
KEYED = dict(keys(Settings))


def test_every_settings_field_is_a_key_but_the_two_the_program_fills_in():
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert fields - set(KEYED) == {"kube", "cluster_node_hosts"}
    assert len({key.name for key in KEYED.values()}) == len(KEYED), "two fields declare one key"
    assert all(key.description.endswith(".") and key.doc for key in KEYED.values())


@pytest.mark.parametrize("path", [schema.PROJECT, schema.DOC], ids=lambda p: p.name)
def test_the_generated_files_are_what_the_model_says(path):
    render = schema.project_text if path == schema.PROJECT else schema.doc_text
    current = path.read_text()
    assert render(current) == current, f"{path.name} is stale: run python -m registry.config.schema --write"


def test_pulumi_yaml_declares_each_key_that_has_a_type_and_is_not_secret_with_its_default():
    assert set(DECLARED) == {key.name for key in KEYED.values() if key.declared}
    for key in KEYED.values():
        if key.declared:
            assert DECLARED[key.name]["default"] == key.plain_default, key.name
            assert DECLARED[key.name]["type"] == key.schema_type, key.name
    assert not set(DECLARED) & set(SECRET_KEYS)


def test_the_secret_keys_are_the_secret_fields():
    assert set(SECRET_KEYS) == {"imagePullSecret", "s3SecretAccessKey", "sshPrivateKey", "sshKeyPassphrase", "tlsKey"}
    assert {key.name for key in KEYED.values()} == KEYS


def table_rows(text: str) -> dict[str, str]:
    """key -> type, from the Markdown table rows of `text` that start with a `key`."""
    return dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", text, re.M))


def test_the_readmes_short_table_names_only_keys_with_the_types_the_full_one_gives():
    readme = (ROOT / "README.md").read_text()
    short = table_rows(readme.split("## Config", 1)[1].split("\n## ", 1)[0])
    full = table_rows(schema.doc_table())
    assert short and set(short) <= KEYS
    assert all(full[name] == kind for name, kind in short.items())


def test_an_sdk_that_moved_its_config_internals_skips_the_unknown_key_check_with_a_warning(monkeypatch):
    from pulumi.runtime import config as runtime_config

    from registry.config import load

    monkeypatch.delattr(runtime_config, "CONFIG")
    warnings = []
    monkeypatch.setattr(load.pulumi.log, "warn", warnings.append)
    assert load.config_keys() is None
    assert warnings and "unknown registry: keys are not checked" in warnings[0]
    assert load.parse_settings({}.get, keys=None).hostname == "image-registry"
