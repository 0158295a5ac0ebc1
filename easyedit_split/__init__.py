"""easyedit-split: SPLIT steering and preference-utility analysis as an EasyEdit plugin.

The names the README uses are importable from here; each is imported on first use, so
``import easyedit_split`` stays cheap (no torch until a name needs it).

The package is laid out by layer (docs/design.md, "Package layout"); a module that moved keeps its old
import path: importing the old name (:data:`_MOVED_MODULES`) warns with a :class:`DeprecationWarning`
naming the new path and gives the very same module object.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import Any

__version__ = "0.1.0"

#: public name → module that defines it
_EXPORTS: dict[str, str] = {
    "load_model": "easyedit_split.core.models",
    "load_builtin": "easyedit_split.data.pairs",
    "load_pairs": "easyedit_split.data.pairs",
    "train_test_split": "easyedit_split.data.pairs",
    "SplitHyperParams": "easyedit_split.training.hparams",
    "Trainer": "easyedit_split.training.trainer",
    "train_layers": "easyedit_split.training.api",
    "evaluate_preference_utility": "easyedit_split.evaluation.api",
    "apply_updates": "easyedit_split.core.apply",
    "merged_updates": "easyedit_split.core.apply",
    "generate": "easyedit_split.core.generation",
    "Site": "easyedit_split.core.sites",
    "VectorUpdate": "easyedit_split.core.updates",
    "LoRAUpdate": "easyedit_split.core.updates",
    "LocalWeightUpdate": "easyedit_split.core.updates",
    "save_updates": "easyedit_split.core.serialization",
    "load_updates": "easyedit_split.core.serialization",
    "load_artefact": "easyedit_split.adapters.artefacts",
    "register_with_easyedit": "easyedit_split.easyedit.registry",
    "run_bench": "easyedit_split.bench.api",
    "BenchConfig": "easyedit_split.bench.api",
}

#: old module path → where it lives now (the old path still imports, with a DeprecationWarning)
_MOVED_MODULES: dict[str, str] = {
    "easyedit_split._io": "easyedit_split.base.atomic_io",
    "easyedit_split.apply": "easyedit_split.core.apply",
    "easyedit_split.apply_hparams": "easyedit_split.core.apply_hparams",
    "easyedit_split.artefacts": "easyedit_split.adapters.artefacts",
    "easyedit_split.checks": "easyedit_split.base.checks",
    "easyedit_split.commands": "easyedit_split.cli",
    "easyedit_split.commands.common": "easyedit_split.cli.common",
    "easyedit_split.commands.compare": "easyedit_split.cli.compare",
    "easyedit_split.commands.easyedit": "easyedit_split.cli.easyedit",
    "easyedit_split.commands.export": "easyedit_split.cli.export",
    "easyedit_split.commands.generate": "easyedit_split.cli.generate",
    "easyedit_split.commands.info": "easyedit_split.cli.info",
    "easyedit_split.commands.run": "easyedit_split.cli.run",
    "easyedit_split.commands.sweep": "easyedit_split.cli.sweep",
    "easyedit_split.commands.train": "easyedit_split.cli.train",
    "easyedit_split.defaults": "easyedit_split.base.defaults",
    "easyedit_split.easyedit_api": "easyedit_split.easyedit.entry_points",
    "easyedit_split.easyedit_layout": "easyedit_split.core.easyedit_layout",
    "easyedit_split.export": "easyedit_split.core.export",
    "easyedit_split.forward": "easyedit_split.core.forward",
    "easyedit_split.generation": "easyedit_split.core.generation",
    "easyedit_split.hparams_io": "easyedit_split.base.hparams_io",
    "easyedit_split.lm_steer": "easyedit_split.adapters.lm_steer",
    "easyedit_split.methods": "easyedit_split.base.methods",
    "easyedit_split.models": "easyedit_split.core.models",
    "easyedit_split.multipliers": "easyedit_split.base.multipliers",
    "easyedit_split.pipeline": "easyedit_split.jobs.main_job",
    "easyedit_split.prompt_baseline": "easyedit_split.adapters.prompt_baseline",
    "easyedit_split.record": "easyedit_split.core.record",
    "easyedit_split.registry": "easyedit_split.easyedit.registry",
    "easyedit_split.sae": "easyedit_split.adapters.sae",
    "easyedit_split.scoring": "easyedit_split.core.scoring",
    "easyedit_split.serialization": "easyedit_split.core.serialization",
    "easyedit_split.sites": "easyedit_split.core.sites",
    "easyedit_split.structure": "easyedit_split.core.structure",
    "easyedit_split.updates": "easyedit_split.core.updates",
}

__all__ = [  # noqa: PLE0604 - the exported names are the table's keys
    "__version__", *_EXPORTS,
]


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path as the module at its new path (the same object), with a warning.

    It sits first on ``sys.meta_path`` so that a submodule of a moved package (``easyedit_split.commands.run``)
    is never found a second time, under its old name, in the new package's folder."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a placeholder; exec_module puts the real module in its place

    def exec_module(self, module: ModuleType) -> None:
        old, new = module.__name__, _MOVED_MODULES[module.__name__]
        warnings.warn(f"{old} has moved to {new}; import it from there", DeprecationWarning,
                      stacklevel=_importer_stacklevel())
        # the import system hands out whatever sys.modules holds under the old name once this returns
        sys.modules[old] = importlib.import_module(new)


def _importer_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the ``import`` statement, past the import machinery."""
    frame, level = sys._getframe(2), 3
    while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
        frame, level = frame.f_back, level + 1
    return level


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModuleFinder())


def __getattr__(name: str) -> Any:
    if f"{__name__}.{name}" in _MOVED_MODULES:  # easyedit_split.registry and the like, by attribute
        return importlib.import_module(f"{__name__}.{name}")
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'easyedit_split' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
