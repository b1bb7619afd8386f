"""A key is added in one place: the table in registry/settings.py. Pulumi.yaml,
its comment of keys it cannot declare, the README's table and Settings follow it."""

import dataclasses
import re

import yaml

from registry.settings import KEYS, TABLE, Settings
from tests.support.stack import ROOT

PROJECT_TEXT = (ROOT / "Pulumi.yaml").read_text()
PROJECT = yaml.safe_load(PROJECT_TEXT)
DECLARED = {k: v for k, v in PROJECT["config"].items() if ":" not in k}
ROWS = {key.name: key for key in TABLE}


def plain(value):
    return list(value) if isinstance(value, tuple) else value


def test_every_key_has_one_row_and_one_settings_field():
    assert len(ROWS) == len(TABLE)
    fields = {f.name for f in dataclasses.fields(Settings)} - {"kube", "cluster_node_hosts"}
    assert {key.attribute for key in TABLE} == fields
    assert all(key.description.endswith(".") for key in TABLE)


def test_pulumi_yaml_declares_keys_of_the_table_with_its_defaults_and_descriptions():
    assert set(DECLARED) <= KEYS
    for name, spec in DECLARED.items():
        row = ROWS[name]
        assert not row.secret, name
        assert spec["default"] == plain(row.default), name
        assert spec["description"] == row.description, name


def test_pulumi_yaml_comment_names_every_key_it_does_not_declare():
    comment = PROJECT_TEXT.split("\nconfig:", 1)[0]
    listed = set(re.findall(r"^#   (\w+) ", comment, re.M))
    undeclared = KEYS - set(DECLARED)
    assert listed == undeclared, (f"Pulumi.yaml: declare or list in its comment {sorted(undeclared - listed)}; "
                                  f"not keys of the table: {sorted(listed - undeclared)}")
    for name in listed:
        line = next(line for line in comment.splitlines() if line.startswith(f"#   {name} "))
        assert ("secret" in line.split()[2:4]) == ROWS[name].secret, line


def table_rows(text: str) -> dict[str, str]:
    """key -> type, from the first Markdown table of `text` whose rows start with a `key`."""
    return dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", text, re.M))


def test_the_configuration_doc_has_a_row_per_key_and_marks_the_secret_ones():
    rows = table_rows((ROOT / "docs" / "configuration.md").read_text().split("## What is checked", 1)[0])
    assert set(rows) == KEYS, (f"docs/configuration.md: add rows for {sorted(KEYS - set(rows))}; "
                               f"not keys of the table: {sorted(set(rows) - KEYS)}")
    assert {name for name, kind in rows.items() if "secret" in kind} == {k.name for k in TABLE if k.secret}


def test_the_readmes_short_table_names_only_keys_of_the_table_as_the_full_one_does():
    readme = (ROOT / "README.md").read_text()
    short = table_rows(readme.split("## Config", 1)[1].split("\n## ", 1)[0])
    full = table_rows((ROOT / "docs" / "configuration.md").read_text())
    assert short and set(short) <= KEYS
    assert all(full[name] == kind for name, kind in short.items())


def test_an_sdk_that_moved_its_config_internals_skips_the_unknown_key_check_with_a_warning(monkeypatch, capsys):
    from pulumi.runtime import config as runtime_config

    from registry import settings

    monkeypatch.delattr(runtime_config, "CONFIG")
    warnings = []
    monkeypatch.setattr(settings.pulumi.log, "warn", warnings.append)
    assert settings.config_keys() is None
    assert warnings and "unknown registry: keys are not checked" in warnings[0]
    assert settings.parse_settings({}.get, keys=None).hostname == "image-registry"
