"""The package is laid out by layer: a module imports only from its own layer or lower ones, no two
modules import each other (directly or round a circle, counting imports inside functions), and every
old module path still imports, with a DeprecationWarning, as the very module at its new path."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import easyedit_split

PACKAGE = "easyedit_split"
ROOT = Path(easyedit_split.__file__).parent

#: first part below ``easyedit_split`` → layer (lower numbers are lower layers)
LAYERS: dict[str, int] = {
    "errors": 0,
    "base": 1,
    "data": 2,
    "core": 3,
    "training": 4,
    "adapters": 5,
    "evaluation": 6,
    "metrics": 7,
    "jobs": 8,
    "bench": 8,
    "editing": 9,
    "easyedit": 10,
    "cli": 11,
}


def _modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its ``__init__.py``)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import of a package module in ``name``, at any depth (inside
    functions and ``if TYPE_CHECKING`` too). ``from X import y`` counts as ``X.y`` when that is a module."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if _is_package(name) else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                child = f"{module}.{alias.name}"
                found.append((child if child in MODULES else module, node.lineno))
    return [(m, line) for m, line in found if m == PACKAGE or m.startswith(PACKAGE + ".")]


GRAPH = {name: _imports(name) for name in MODULES}


def _layer(name: str) -> int | None:
    """The layer of a module; None for the front door ``easyedit_split`` itself."""
    if name == PACKAGE:
        return None
    top = name.split(".")[1]
    if top not in LAYERS:
        raise AssertionError(f"{name}: {top!r} is in no layer; add it to LAYERS (and docs/design.md)")
    return LAYERS[top]


def test_root_holds_only_the_front_door_and_errors():
    assert sorted(p.name for p in ROOT.glob("*.py")) == ["__init__.py", "errors.py"]


def test_every_module_is_in_a_layer():
    for name in MODULES:
        _layer(name)


def test_the_front_door_imports_no_package_module():
    """``import easyedit_split`` stays cheap: its names are imported on first use, by their paths."""
    assert GRAPH[PACKAGE] == []


def test_no_import_points_up():
    upward = [f"{name}:{line} imports {target} (layer {_layer(target)} > {_layer(name)})"
              for name, imports in GRAPH.items() if name != PACKAGE
              for target, line in imports
              if target != PACKAGE and _layer(target) > _layer(name)]
    assert upward == []


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each set of modules that import one another round a circle (a module reaching itself)."""
    reach = {node: _reachable(graph, node) for node in graph}
    circles = {tuple(sorted(other for other in reach[node] if node in reach[other]))
               for node in graph if node in reach[node]}
    return sorted(list(circle) for circle in circles)


def test_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}) == [["a", "b", "c"], ["e"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    graph = {name: {target for target, _ in imports if target in MODULES and target != name}
             for name, imports in GRAPH.items()}
    assert _cycles(graph) == []


_MODULE_PATH = re.compile(rf"{PACKAGE}(\.[A-Za-z_]\w*)+")


def test_module_paths_in_strings_are_current():
    """Paths written as strings (``importlib.import_module`` targets, the CLI's command table, the ``.pth``
    hook, EasyEdit registrations, docstrings) name modules at their new place, not by an old path."""
    stale = []
    for name, path in MODULES.items():
        if name == PACKAGE:
            continue  # the front door's table of old paths
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            for match in _MODULE_PATH.finditer(node.value):
                dotted = match.group(0)
                prefixes = [".".join(dotted.split(".")[:k]) for k in range(2, dotted.count(".") + 2)]
                if any(prefix in easyedit_split._MOVED_MODULES for prefix in prefixes):
                    stale.append(f"{name}:{node.lineno}: {dotted}")
    assert stale == []


@pytest.mark.parametrize(("old", "new"), sorted(easyedit_split._MOVED_MODULES.items()))
def test_old_path_imports_the_new_module_with_a_warning(old, new):
    assert new in MODULES and old not in MODULES
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=re.escape(new)):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert module.__name__ == new  # the module itself is untouched (its name, its spec)
    assert module.__spec__.name == new


def test_old_path_by_attribute_and_from_import():
    from easyedit_split.easyedit import registry

    for old in ("registry", "models"):
        sys.modules.pop(f"easyedit_split.{old}", None)
        vars(easyedit_split).pop(old, None)
    with pytest.warns(DeprecationWarning, match="easyedit_split.easyedit.registry"):
        from easyedit_split import registry as old
    assert old is registry
    with pytest.warns(DeprecationWarning, match="easyedit_split.core.models"):
        assert easyedit_split.models is importlib.import_module("easyedit_split.core.models")


def test_adapters_package_keeps_the_old_module_names_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        from easyedit_split.adapters import (
            AdapterError,
            from_easyedit_pt,
            from_edited_weights,
            from_peft,
            load_artefact,
        )
    from easyedit_split.adapters import artefacts, builders

    assert (AdapterError, from_easyedit_pt, from_edited_weights, from_peft) == (
        builders.AdapterError, builders.from_easyedit_pt, builders.from_edited_weights, builders.from_peft)
    assert load_artefact is artefacts.load_artefact
    assert set(builders.__all__) | {"load_artefact"} <= set(importlib.import_module("easyedit_split.adapters").__all__)


def test_every_public_name_still_imports_from_the_package():
    for name in easyedit_split.__all__:
        assert getattr(easyedit_split, name) is not None


def test_cli_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "easyedit_split.cli", "--version"], capture_output=True,
                         text=True, timeout=120, check=False, cwd=ROOT.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"easyedit-split {easyedit_split.__version__}"
