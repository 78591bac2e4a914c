"""The layout's one rule, checked on the source: imports only point down the layers.

    schemas, policies, pipeline.settings, pipeline.observability  (leaves)
      transport -> audit -> runtime                               (records, decisions, the stage runner)
      media -> likeness, generation, provenance, content, hashing (what a request carries and becomes)
        state                                                     (registries, cameo enrollment)
        cases                                                     (reviews, takedowns)
         enforcement                                              (reports, strikes, sanctions, owners' removals)
          consumers                                               (one decision module per stage)
            worker                                                (builds stages, runs faust)
              producer, broker, health -> console                 (the web console sends through the producer)
              cli, demo                                           (entry points)

A module may import its own subpackage and anything of a lower rank; an import that points up
(a registry importing the worker, say) would let a cycle in, so it fails here with its line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lower rank = lower layer. Packages of equal rank do not import each other.
RANK = {
    "schemas": 0, "policies": 0, "pipeline.settings": 0, "pipeline.observability": 0,
    "pipeline.transport": 1,
    "pipeline.audit": 2,
    "pipeline.runtime": 3,
    "pipeline.media": 3,
    "pipeline.likeness": 4, "pipeline.generation": 4, "pipeline.provenance": 4, "pipeline.content": 4,
    "pipeline.hashing": 4,
    "pipeline.state": 5,
    "pipeline.cases": 6,
    "pipeline.enforcement": 6.5,
    "consumers": 7,
    "pipeline.worker": 8,
    "pipeline.producer": 9, "pipeline.broker": 9, "pipeline.health": 9,
    "pipeline.console": 9.5,
    "pipeline.demo": 10, "pipeline.cli": 11,
}
SUBPACKAGES = ["transport", "audit", "runtime", "media", "state", "likeness", "generation", "provenance", "content",
               "hashing", "cases", "enforcement", "worker", "console", "cli", "observability"]


def layer_of(module: str) -> str | None:
    """The RANK key a dotted module name belongs to (its longest matching prefix)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in RANK:
            return prefix
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from pipeline import worker` names a module too
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                         if layer_of(f"{node.module}.{alias.name}") not in (None, layer_of(node.module)))
    return found


SOURCES = sorted(p for folder in ("pipeline", "consumers", "policies", "schemas") for p in (ROOT / folder).rglob("*.py"))


def test_every_module_has_a_layer():
    unplaced = [module_name(p) for p in SOURCES if layer_of(module_name(p)) is None
                and module_name(p) != "pipeline"]
    assert unplaced == [], f"give these modules a layer in RANK (or move them into a subpackage): {unplaced}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path):
    importer = layer_of(module_name(path))
    if importer is None:
        return
    upward = []
    for line, target in imported_modules(ast.parse(path.read_text())):
        layer = layer_of(target)
        if layer is None or layer == importer:
            continue
        if RANK[layer] >= RANK[importer]:
            upward.append(f"{path.relative_to(ROOT)}:{line} imports {target} ({layer}, rank {RANK[layer]}) "
                          f"from {importer} (rank {RANK[importer]})")
    assert upward == []


def test_no_module_left_beside_the_subpackages():
    """pipeline/ keeps only settings and the entry points at its top; everything else lives in a room."""
    top = sorted(p.stem for p in (ROOT / "pipeline").glob("*.py") if p.stem != "__init__")
    assert top == ["broker", "demo", "health", "producer", "settings"]
    for name in SUBPACKAGES:
        init = ROOT / "pipeline" / name / "__init__.py"
        assert init.is_file() and ast.get_docstring(ast.parse(init.read_text())), f"{init} needs a docstring"
