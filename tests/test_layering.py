"""The package layering: no package imports upward, and no two packages import each other.

core (ledger) <- chain/store <- consensus/tiers/petra/market (+ profiles, devices) <- node/analytics/twin/report
<- sim/cli. A module may import from its own layer or below; the package graph has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gridledger

SRC = Path(gridledger.__file__).parent
LAYER = {
    "ledger": 0,
    "store": 1,
    "chain": 1,
    "jsonview": 1,
    "consensus": 2,
    "tiers": 2,
    "petra": 2,
    "market": 2,
    "profiles": 2,
    "devices": 2,
    "node": 3,
    "client": 3,  # the public client of the node API (gridledger.client re-exports node.client)
    "analytics": 3,
    "twin": 3,
    "meter": 3,  # the meter daemon: MQTT (twin) in, the node API (node) out
    "report": 4,
    "sim": 4,
    "cli": 4,
    "demo": 4,
    "__main__": 5,
}


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """The top-level gridledger packages a module imports (module level and inside functions alike)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: stays inside the package unless it climbs out
                if node.level >= len(path.relative_to(SRC).parts):
                    found.add(node.module.split(".")[0] if node.module else "?")
                continue
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "gridledger" and len(parts) > 1:
                found.add(parts[1])
    return found


def _graph() -> dict[str, dict[str, list[str]]]:
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(SRC.rglob("*.py")):
        pkg = _package(path)
        if pkg == "__init__":
            continue
        for dep in _imports(path) - {pkg}:
            graph.setdefault(pkg, {}).setdefault(dep, []).append(str(path.relative_to(SRC)))
    return graph


def test_every_package_has_a_layer():
    packages = {_package(p) for p in SRC.rglob("*.py")} - {"__init__"}
    assert packages <= set(LAYER), f"packages without a layer: {sorted(packages - set(LAYER))}"


def test_no_package_imports_upward():
    upward = [
        f"{pkg} (layer {LAYER[pkg]}) imports {dep} (layer {LAYER[dep]}) in {', '.join(files)}"
        for pkg, deps in _graph().items()
        for dep, files in deps.items()
        if LAYER[dep] > LAYER[pkg]
    ]
    assert not upward, "\n".join(upward)


def test_no_package_cycle():
    graph = {pkg: set(deps) for pkg, deps in _graph().items()}
    cycles = [
        f"{a} <-> {b}" for a, deps in graph.items() for b in deps if a < b and a in graph.get(b, set())
    ]
    assert not cycles, cycles
