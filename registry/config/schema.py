"""Pulumi.yaml's config block and docs/configuration.md's table, written from the
settings model, so that a key is declared once (registry/config/keys.py).

    python -m registry.config.schema --write    # after adding or changing a key

tests/unit/test_config_table.py fails while either file differs from what this writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .keys import Key, keys
from .model import Settings

ROOT = Path(__file__).resolve().parent.parent.parent
PROJECT = ROOT / "Pulumi.yaml"
DOC = ROOT / "docs" / "configuration.md"

# Everything in Pulumi.yaml after this line is written here; the kubernetes: entries above it are not.
MARKER = "  # Below: written by `python -m registry.config.schema --write` from registry/config/; edit there."
DOC_HEADER = "| key | type | default | meaning |\n|---|---|---|---|\n"


def _scalar(value: object) -> str:
    """A YAML scalar as JSON writes it: quoted only where YAML would read it otherwise."""
    text = json.dumps(value)
    if not isinstance(value, str) or not value or text[1:-1] != value or value.strip() != value:
        return text
    return text if any(c in value for c in ":#*&!|>'\"%@`{}[],") else value


def _declared(key: Key) -> list[str]:
    lines = [f"  {key.name}:", f"    type: {key.schema_type}"]
    if key.schema_type == "array":
        lines += ["    items:", "      type: string"]
    lines.append(f"    description: {_scalar(key.description)}")
    default = key.plain_default
    if isinstance(default, list):
        lines += ["    default:", *(f"      - {_scalar(item)}" for item in default)]
    else:
        lines.append(f"    default: {_scalar(default)}")
    return lines


def config_block() -> str:
    """The generated part of Pulumi.yaml's `config:`, from MARKER on."""
    every = [key for _, key in keys(Settings)]
    lines = [
        MARKER,
        "  # Not declared, on purpose (the engine makes a declared key without a default mandatory",
        "  # for every stack, and its schema has no type for an object or a list of objects):",
        *(
            f"  #   {key.name} ({key.doc_type}, default {key.doc_default.replace('`', '')}): {key.description}"
            for key in every
            if not key.declared
        ),
        "  # The program checks every key (registry/config/) before it creates anything.",
    ]
    for key in every:
        if key.declared:
            lines += _declared(key)
    return "\n".join(lines) + "\n"


def doc_table() -> str:
    rows = [f"| `{key.name}` | {key.doc_type} | {key.doc_default} | {key.doc} |" for _, key in keys(Settings)]
    return DOC_HEADER + "\n".join(rows) + "\n"


def project_text(current: str) -> str:
    """Pulumi.yaml with its generated part written anew."""
    head, found, _ = current.partition(MARKER)
    if not found:
        raise ValueError(f"{PROJECT}: no line {MARKER.strip()!r} under config:")
    return head + config_block()


def doc_text(current: str) -> str:
    """docs/configuration.md with its key table written anew (up to the blank line that ends it)."""
    head, found, rest = current.partition(DOC_HEADER)
    if not found:
        raise ValueError(f"{DOC}: no table headed {DOC_HEADER.splitlines()[0]!r}")
    _, _, tail = rest.partition("\n\n")
    return head + doc_table() + "\n" + tail


def main() -> int:
    parser = argparse.ArgumentParser(description="Write Pulumi.yaml's config block and the docs' key table.")
    parser.add_argument("--write", action="store_true", help="write the files (else: say which are stale)")
    stale = []
    write = parser.parse_args().write
    for path, render in ((PROJECT, project_text), (DOC, doc_text)):
        current = path.read_text()
        wanted = render(current)
        if wanted != current:
            stale.append(path)
            if write:
                path.write_text(wanted)
    for path in stale:
        print(f"{'wrote' if write else 'stale'}: {path.relative_to(ROOT)}")
    return 1 if stale and not write else 0


if __name__ == "__main__":
    sys.exit(main())
