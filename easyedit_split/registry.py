"""Method and evaluator registries in EasyEdit's shape, and registration into EasyEdit.

EasyEdit's steering framework keys methods by name, each a ``{'train': ..., 'apply': ...}`` pair:
``HYPERPARAMS_CLASS_DICT`` holds the hyperparameter classes and ``METHODS_CLASS_DICT`` the
``generate_<name>`` / ``apply_<name>`` functions (newer commits: ``METHOD_FNS`` with lazy
``"module:function"`` targets). This module holds the same tables for the plugin's methods, with
lazy targets so importing the registry imports no training code.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "ALIASES",
    "EVALUATORS",
    "HYPERPARAMS_CLASS_DICT",
    "METHODS_CLASS_DICT",
    "METHOD_FNS",
    "METHOD_NAMES",
    "canonical_method",
    "get_evaluator",
    "get_hparams_class",
    "get_method",
    "register_with_easyedit",
]

_TRAIN_HP = "easyedit_split.training.hparams"
_API = "easyedit_split.easyedit_api"

METHOD_NAMES = ("split", "sft", "reps", "dpo", "diffmean")

#: accepted spellings → canonical name (upstream spells SPLIT "spilt"; BiPO is bidirectional DPO)
ALIASES = {"spilt": "split", "bipo": "dpo", "caa": "diffmean", "diff_mean": "diffmean", "mean_diff": "diffmean",
           "reps_vector": "reps"}

HYPERPARAMS_CLASS_DICT_TARGETS: dict[str, dict[str, str]] = {
    name: {"train": f"{_TRAIN_HP}:{cls}HyperParams", "apply": f"{_TRAIN_HP}:Apply{cls}HyperParams"}
    for name, cls in (("split", "Split"), ("sft", "SFT"), ("reps", "RePS"), ("dpo", "DPO"), ("diffmean", "DiffMean"))
}

METHOD_FNS: dict[str, dict[str, str]] = {
    name: {"train": f"{_API}:generate_{name}", "apply": f"{_API}:apply_{name}"} for name in METHOD_NAMES
}

EVALUATOR_TARGETS: dict[str, str] = {
    "preference_utility": "easyedit_split.evaluation.api:evaluate_preference_utility",
}


def _resolve(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


class _LazyPairs(Mapping):
    """``{name: {'train': obj, 'apply': obj}}`` resolving ``"module:attr"`` targets on access."""

    def __init__(self, targets: dict[str, dict[str, str]]) -> None:
        self._targets = targets

    def __getitem__(self, name: str) -> dict[str, Any]:
        key = canonical_method(name)
        return {kind: _resolve(t) for kind, t in self._targets[key].items()}

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def __contains__(self, name: object) -> bool:
        try:
            return canonical_method(str(name)) in self._targets
        except KeyError:
            return False


HYPERPARAMS_CLASS_DICT = _LazyPairs(HYPERPARAMS_CLASS_DICT_TARGETS)
METHODS_CLASS_DICT = _LazyPairs(METHOD_FNS)


class _LazyEvaluators(Mapping):
    def __getitem__(self, name: str) -> Callable:
        return _resolve(EVALUATOR_TARGETS[name.lower()])

    def __iter__(self):
        return iter(EVALUATOR_TARGETS)

    def __len__(self):
        return len(EVALUATOR_TARGETS)


EVALUATORS = _LazyEvaluators()


def canonical_method(name: str) -> str:
    """Case-insensitive method name with aliases resolved; KeyError lists the known names."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in METHOD_FNS:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(METHOD_NAMES)} (aliases: {', '.join(sorted(ALIASES))})")
    return key


def get_method(name: str, kind: str = "train") -> Callable:
    return METHODS_CLASS_DICT[name][kind]


def get_hparams_class(name: str, kind: str = "train") -> type:
    return HYPERPARAMS_CLASS_DICT[name][kind]


def get_evaluator(name: str = "preference_utility") -> Callable:
    return EVALUATORS[name]


_EASYEDIT_MODULES = ("steer.utils.alg_dict", "easyeditor.util.alg_dict")


def register_with_easyedit(names: tuple[str, ...] | None = None, *, overwrite: bool = False) -> list[str]:
    """Insert the plugin's methods into EasyEdit's registries when EasyEdit is importable.

    Tries ``steer.utils.alg_dict`` (an EasyEdit checkout on ``sys.path``) and
    ``easyeditor.util.alg_dict``. Steering registries get ``{'train', 'apply'}`` pairs in
    ``HYPERPARAMS_CLASS_DICT`` and ``METHODS_CLASS_DICT`` (or lazy targets in ``METHOD_FNS`` where
    that table exists); a knowledge-editing ``ALG_DICT`` gets nothing (SPLIT is not an editor).
    Names EasyEdit already defines (e.g. its own ``caa``) are kept unless ``overwrite``. Both
    ``split`` and the upstream spelling ``spilt`` are registered. Returns the module names it
    registered into; logs when it finds none.
    """
    wanted = [canonical_method(n) for n in (names or METHOD_NAMES)]
    done = []
    for module_name in _EASYEDIT_MODULES:
        try:
            mod = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - ImportError, or EasyEdit's own import-time failures
            logger.debug("EasyEdit registry %s not importable: %s", module_name, exc)
            continue
        hp_dict = getattr(mod, "HYPERPARAMS_CLASS_DICT", None)
        fn_table = getattr(mod, "METHOD_FNS", None)
        methods = getattr(mod, "METHODS_CLASS_DICT", None)
        if hp_dict is None and fn_table is None and methods is None:
            logger.info("%s has no steering registries (a knowledge-editing ALG_DICT only); nothing registered", module_name)
            continue
        for name in wanted:
            keys = [name] + [alias for alias, target in ALIASES.items() if target == name and alias == "spilt"]
            for key in keys:
                if not overwrite and isinstance(hp_dict, dict) and key in hp_dict:
                    logger.info("EasyEdit already defines %r; keeping its entry", key)
                    continue
                if isinstance(hp_dict, dict):
                    hp_dict[key] = HYPERPARAMS_CLASS_DICT[name]
                if isinstance(fn_table, dict):
                    fn_table[key] = dict(METHOD_FNS[name])
                if isinstance(methods, dict):
                    methods[key] = METHODS_CLASS_DICT[name]
        done.append(module_name)
        logger.info("registered %s into %s", ", ".join(wanted), module_name)
    if not done:
        logger.info("EasyEdit not found on sys.path (tried %s); the plugin runs standalone", ", ".join(_EASYEDIT_MODULES))
    return done


def _loaded_easyedit_modules() -> list[str]:
    return [m for m in _EASYEDIT_MODULES if m in sys.modules]
