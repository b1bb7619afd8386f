"""What declares a config key: one field of the settings model (registry/config/model.py) made
with `setting()`, which carries the key's name, its check, its default, and what it is for.

Everything else is derived from those fields: the keys the program knows and
which are secret (registry/config/load.py), Pulumi.yaml's config block and
docs/configuration.md's table (registry/config/schema.py).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .validators import Check


@dataclass(frozen=True)
class Key:
    name: str
    check: Check
    default: Any
    # One line, for Pulumi.yaml; and the docs table's text, type and default.
    description: str
    doc: str
    doc_type: str
    doc_default: str
    secret: bool = False
    # False: "" is a value of its own (gcSchedule "" turns collection off), not "unset".
    blank_is_unset: bool = True

    @property
    def declared(self) -> bool:
        """Whether Pulumi.yaml declares it, with its type and default: the engine makes a declared key
        mandatory unless it has a default, and its schema has no type for an object or a list of objects."""
        return not self.secret and self.schema_type is not None

    @property
    def schema_type(self) -> str | None:
        value = self.default
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, int):
            return "integer"
        if isinstance(value, str):
            return "string"
        if isinstance(value, tuple) and value and all(isinstance(item, str) for item in value):
            return "array"
        return None

    @property
    def plain_default(self) -> Any:
        """The default as YAML and JSON write it."""
        value = self.default
        if isinstance(value, Enum):
            return value.value
        return list(value) if isinstance(value, tuple) else value


def setting(
    name: str,
    check: Check,
    default: Any,
    description: str,
    *,
    doc: str,
    doc_type: str | None = None,
    doc_default: str | None = None,
    secret: bool = False,
    blank_is_unset: bool = True,
) -> Any:
    """A field of Settings that is the config key `name`."""
    key = Key(
        name,
        check,
        default,
        description,
        doc,
        doc_type or _doc_type(default, secret),
        doc_default or _doc_default(default),
        secret,
        blank_is_unset,
    )
    if isinstance(default, dict | list):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata={"key": key})
    return dataclasses.field(default=default, metadata={"key": key})


def keys(model: type) -> Iterator[tuple[str, Key]]:
    """(attribute, Key) of every field of `model` that is a config key, in declaration order."""
    for field in dataclasses.fields(model):
        if "key" in field.metadata:
            yield field.name, field.metadata["key"]


def _doc_type(default: Any, secret: bool) -> str:
    if secret:
        return "secret string"
    if isinstance(default, bool):
        return "boolean"
    if isinstance(default, int):
        return "integer"
    if isinstance(default, tuple):
        return "list of strings"
    return "string"


def _doc_default(default: Any) -> str:
    if default is None:
        return "none"
    if isinstance(default, Enum):
        default = default.value
    if isinstance(default, bool):
        return f"`{json.dumps(default)}`"
    if isinstance(default, tuple):
        return f"`{json.dumps(list(default))}`"
    return f"`{default}`"
