"""The package's layers, read from its import statements (ast, nothing imported): an import goes down the layers,
never up, and no two modules import each other, however indirectly — lazy and TYPE_CHECKING imports included,
since a cycle there is a cycle in the design even when Python tolerates it."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# lowest first; an entry is a package or module under raysweep (the most specific entry names a module's layer)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("atomic", "hashing", "jsonout", "lazy", "data.location"),
    ("config",),
    ("data", "nn", "features", "metrics", "tracking"),
    ("tokenizers", "diffusion", "analysis"),
    ("search",),
    ("engine",),  # runs a plan; names no stage
    ("estimate",),
    ("stages",),
    ("runner", "latent_files"),  # the runner wires the stages into the engine
    ("view", "api"),
    ("cli",),
)
# config validates names against the registries that own them, inside the validating function
CONFIG_LOOKUPS = {"tokenizers", "diffusion", "metrics", "features", "analysis", "search", "data"}
# the modules that run a job type (`raysweep.runner.STAGES`, and the reference network before the plan)
STAGE_MODULES = {f"raysweep.stages.{name}" for name in
                 ("reference", "tokenizer", "latent_metrics", "model_metrics", "diffusion", "search", "analysis")}
# known module cycles, each with why it is still there
KNOWN_CYCLES: dict[frozenset[str], str] = {}


def modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / "raysweep").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> Iterator[tuple[str, bool]]:
    """(imported raysweep module, whether the import runs when the module is imported)."""
    tree = ast.parse(path.read_text())
    eager = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                     for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("raysweep.") and name in known:
                yield name, id(node) in eager


def layer(module: str) -> tuple[int, str]:
    """The layer index of a module and the entry that placed it there."""
    rest = module.removeprefix("raysweep.")
    best = max(((i, entry) for i, entries in enumerate(LAYERS) for entry in entries
                if rest == entry or rest.startswith(entry + ".")), key=lambda ie: len(ie[1]), default=None)
    if best is None:
        raise AssertionError(f"{module} is in no layer of tests/test_layering.py LAYERS")
    return best


def graph() -> dict[str, set[tuple[str, bool]]]:
    known = modules()
    known.pop("raysweep")  # the package facade: `__version__`, and names that load on first use (raysweep.lazy)
    return {name: {(t, eager) for t, eager in imports(path, known) if t != name and t != "raysweep"}
            for name, path in known.items()}


def upward(edges: dict[str, set[tuple[str, bool]]]) -> list[str]:
    """Imports that go up the layers (config's lazy registry lookups excepted)."""
    found = []
    for module, targets in edges.items():
        (here, home) = layer(module)
        for target, eager in targets:
            (there, entry) = layer(target)
            lookup = home == "config" and entry.split(".")[0] in CONFIG_LOOKUPS and not eager
            if there > here and not lookup:
                found.append(f"{module} -> {target}")
    return sorted(found)


def test_imports_go_down_the_layers() -> None:
    found = upward(graph())
    assert not found, "upward imports:\n" + "\n".join(found)


def test_no_stage_imports_another_stage() -> None:
    """A stage hands work to the scheduler (a search trial: a sub-plan), never calls another stage."""
    found = sorted(f"{m} -> {t}" for m, targets in graph().items() if m in STAGE_MODULES
                   for t, _ in targets if t in STAGE_MODULES)
    assert not found, f"stages importing stages: {found}"


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = {stack.pop()}
            while v not in component:
                component.add(stack.pop())
            if len(component) > 1:
                found.append(frozenset(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_through_others() -> None:
    edges = {module: {t for t, _ in targets} for module, targets in graph().items()}
    found = [sorted(c) for c in cycles(edges) if c not in KNOWN_CYCLES]
    assert not found, f"import cycles: {found}"


def test_known_cycles_still_exist() -> None:
    """A cycle cut since it was listed leaves the list."""
    edges = {module: {t for t, _ in targets} for module, targets in graph().items()}
    assert set(KNOWN_CYCLES) <= set(cycles(edges))


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [frozenset("abc")]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
])
def test_cycles_finds_exactly_the_loops(edges: dict[str, set[str]], expected: list[frozenset[str]]) -> None:
    assert cycles(edges) == expected


def test_an_upward_import_is_caught() -> None:
    """The check itself: a core importing the engine is upward, even lazily; config's lookups only when lazy."""
    assert upward({"raysweep.diffusion.train": {("raysweep.engine.store", False)},
                   "raysweep.engine.store": {("raysweep.diffusion.train", True)}}) == [
        "raysweep.diffusion.train -> raysweep.engine.store"]
    assert upward({"raysweep.config.spec": {("raysweep.metrics.registry", False)}}) == []
    assert upward({"raysweep.config.spec": {("raysweep.metrics.registry", True)}}) == [
        "raysweep.config.spec -> raysweep.metrics.registry"]
