"""easyedit-split: SPLIT steering and preference-utility analysis as an EasyEdit plugin.

The names the README uses are importable from here; each is imported on first use, so
``import easyedit_split`` stays cheap (no torch until a name needs it).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name → module that defines it
_EXPORTS: dict[str, str] = {
    "load_model": "easyedit_split.models",
    "load_builtin": "easyedit_split.data.pairs",
    "load_pairs": "easyedit_split.data.pairs",
    "train_test_split": "easyedit_split.data.pairs",
    "SplitHyperParams": "easyedit_split.training.hparams",
    "Trainer": "easyedit_split.training.trainer",
    "train_layers": "easyedit_split.training.api",
    "evaluate_preference_utility": "easyedit_split.evaluation.api",
    "apply_updates": "easyedit_split.apply",
    "merged_updates": "easyedit_split.apply",
    "generate": "easyedit_split.generation",
    "Site": "easyedit_split.sites",
    "VectorUpdate": "easyedit_split.updates",
    "LoRAUpdate": "easyedit_split.updates",
    "LocalWeightUpdate": "easyedit_split.updates",
    "save_updates": "easyedit_split.serialization",
    "load_updates": "easyedit_split.serialization",
    "load_artefact": "easyedit_split.artefacts",
    "register_with_easyedit": "easyedit_split.registry",
    "run_bench": "easyedit_split.bench.api",
    "BenchConfig": "easyedit_split.bench.api",
}

__all__ = [  # noqa: PLE0604 - the exported names are the table's keys
    "__version__", *_EXPORTS,
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'easyedit_split' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
