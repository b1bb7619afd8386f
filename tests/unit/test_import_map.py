"""The map of the program's imports: no circle, no module importing one of a layer above
its own, and components that take their settings from the model alone (never the rules
or the loading). A new module must be placed in a layer here."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REGISTRY = Path(__file__).resolve().parents[2] / "registry"

# Lowest first. A module may import its own layer and those below.
LAYERS: dict[str, set[str]] = {
    "parts": {
        "registry",
        "registry.names",
        "registry.credentials",
        "registry.maintenance",
        "registry.proxy",
        "registry.node_script",
        "registry.workstation",
        "registry.brought_certificate",
        "registry.config.validators",
        "registry.cluster.view",
    },
    "config": {
        "registry.config.types",
        "registry.config.keys",
        "registry.config.checks",
        "registry.config.node_checks",
        "registry.config.service",
        "registry.config.storage",
        "registry.config.nodes",
        "registry.config.tls",
        "registry.config.model",
        "registry.config.rules",
        "registry.config.load",
        "registry.config.schema",
    },
    "components": {
        "registry.certificates",
        "registry.discovery",
        "registry.pod",
        "registry.trust_pod",
        "registry.workload",
        "registry.cluster_trust",
        "registry.pull_secrets",
        "registry.node_trust",
        "registry.node_storage",
    },
    "cluster": {
        "registry.cluster",
        "registry.cluster.certificate",
        "registry.cluster.kubernetes",
        "registry.cluster.checks",
    },
    "program": {"registry.program"},
}
# What a component may take from the config package: the settings and their types.
MODEL = {"registry.config.model", "registry.config.types"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(REGISTRY.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_map() -> dict[str, set[str]]:
    """Every module of registry/ and the modules of registry/ it imports (TYPE_CHECKING ones too)."""
    return {module: set(imported) for module, imported in _import_map().items()}


@functools.cache
def _import_map() -> dict[str, frozenset[str]]:
    found: dict[str, frozenset[str]] = {}
    for path in sorted(REGISTRY.rglob("*.py")):
        module = _module(path)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
                imported |= {target} if node.module else {f"{target}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("registry"):
                imported.add(str(node.module))
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names if alias.name.startswith("registry")}
        found[module] = frozenset(name for name in imported if name != module)
    return found


def _layer(module: str) -> int:
    ranks = [rank for rank, members in enumerate(LAYERS.values()) if module in members]
    assert len(ranks) == 1, f"{module} belongs in exactly one layer of LAYERS"
    return ranks[0]


def test_every_module_has_a_place_on_the_map():
    for module in import_map():
        _layer(module)


def test_no_module_imports_one_of_a_layer_above_its_own():
    wrong = [
        f"{module} imports {target}"
        for module, targets in import_map().items()
        for target in sorted(targets)
        if _layer(target) > _layer(module)
    ]
    assert wrong == []


def test_components_take_their_settings_from_the_model_alone():
    wrong = [
        f"{module} imports {target}"
        for module in sorted(LAYERS["components"])
        for target in sorted(import_map()[module])
        if target.startswith("registry.config") and target not in MODEL
    ]
    assert wrong == []


def _check_no_circle(graph: dict[str, set[str]]) -> None:
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, "a circle: " + " -> ".join([*path[path.index(module) :], module])
        if module in done:
            return
        for target in sorted(graph.get(module, ())):
            visit(target, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())


def test_the_imports_make_no_circle():
    _check_no_circle(import_map())


def test_a_circle_is_seen_when_there_is_one():
    # The check must be able to fail: the maintenance <-> pod circle there was.
    graph = import_map()
    graph["registry.maintenance"] = {*graph["registry.maintenance"], "registry.pod"}
    circle = "a circle: registry.maintenance -> registry.pod -> registry.maintenance"
    with pytest.raises(AssertionError, match=re.escape(circle)):
        _check_no_circle(graph)
