"""Method and evaluator registries in EasyEdit's shape, and registration into EasyEdit.

EasyEdit's steering framework keys methods by name, each a ``{'train': ..., 'apply': ...}`` pair:
``HYPERPARAMS_CLASS_DICT`` holds the hyperparameter classes and ``METHODS_CLASS_DICT`` the
``generate_<name>`` / ``apply_<name>`` functions (newer commits: ``METHOD_FNS`` with lazy
``"module:function"`` targets). This module holds the same tables for the plugin's methods, with
lazy targets so importing the registry imports no training code. Every table here is derived from the
method table in :mod:`easyedit_split.base.methods`.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from easyedit_split.base.methods import METHOD_NAMES, METHODS, canonical_method, resolve

logger = logging.getLogger(__name__)

__all__ = [
    "ALIASES",
    "EVALUATORS",
    "HYPERPARAMS_CLASS_DICT",
    "METHODS_CLASS_DICT",
    "METHOD_FNS",
    "METHOD_NAMES",
    "REGISTRATIONS",
    "TAKE_OVER",
    "Registration",
    "canonical_method",
    "get_evaluator",
    "get_hparams_class",
    "get_method",
    "register_with_easyedit",
]

_API = "easyedit_split.easyedit.entry_points"

#: accepted spellings → canonical name (upstream spells SPLIT "spilt"; BiPO is bidirectional DPO)
ALIASES = {alias: m.name for m in METHODS for alias in m.aliases}

HYPERPARAMS_CLASS_DICT_TARGETS: dict[str, dict[str, str]] = {
    m.name: {"train": m.train_hparams, "apply": m.apply_hparams} for m in METHODS
}

METHOD_FNS: dict[str, dict[str, str]] = {
    name: {"train": f"{_API}:generate_{name}", "apply": f"{_API}:apply_{name}"} for name in METHOD_NAMES
}

EVALUATOR_TARGETS: dict[str, str] = {
    "preference_utility": "easyedit_split.evaluation.api:evaluate_preference_utility",
}


class _LazyPairs(Mapping):
    """``{name: {'train': obj, 'apply': obj}}`` resolving ``"module:attr"`` targets on access."""

    def __init__(self, targets: dict[str, dict[str, str]]) -> None:
        self._targets = targets

    def __getitem__(self, name: str) -> dict[str, Any]:
        key = canonical_method(name)
        return {kind: resolve(t) for kind, t in self._targets[key].items()}

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
        return resolve(EVALUATOR_TARGETS[name.lower()])

    def __iter__(self):
        return iter(EVALUATOR_TARGETS)

    def __len__(self):
        return len(EVALUATOR_TARGETS)


EVALUATORS = _LazyEvaluators()


def get_method(name: str, kind: str = "train") -> Callable:
    return METHODS_CLASS_DICT[name][kind]


def get_hparams_class(name: str, kind: str = "train") -> type:
    return HYPERPARAMS_CLASS_DICT[name][kind]


def get_evaluator(name: str = "preference_utility") -> Callable:
    return EVALUATORS[name]


_STEER_REGISTRY = "steer.utils.alg_dict"
_STEER_GENERATORS = "steer.vector_generators.vector_generators"
_EDIT_REGISTRY = "easyeditor.util.alg_dict"
_EE_HP = "easyedit_split.easyedit.easyedit_hparams"

#: EasyEdit's built-in steering methods the plugin takes over by default: upstream's own code for
#: these cannot run on transformers 5 (``apply_chat_template(tokenize=True)`` returns a
#: ``BatchEncoding`` that their ``utils.py`` treats as a list). ``caa`` runs and is kept.
TAKE_OVER = ("spilt", "sft", "reps")

@dataclass
class Registration:
    """What :func:`register_with_easyedit` did in one EasyEdit registry module."""

    module: str
    added: list[str] = field(default_factory=list)  # names EasyEdit did not have
    taken_over: list[str] = field(default_factory=list)  # upstream names now served by the plugin
    kept: list[str] = field(default_factory=list)  # upstream names left to upstream's code
    evaluator: bool = False  # EasyEdit's steering Evaluator accepts "preference_utility"

    def summary(self) -> str:
        parts = [f"added {', '.join(self.added) or 'nothing'}"]
        if self.taken_over:
            parts.append(f"took over upstream's {', '.join(self.taken_over)} (the plugin now trains and applies them)")
        if self.kept:
            parts.append(f"kept upstream's {', '.join(self.kept)}")
        if self.evaluator:
            parts.append("EasyEdit's Evaluator accepts eval_methods 'preference_utility'")
        return f"easyedit-split registered into {self.module}: " + "; ".join(parts)


#: the registrations done in this process, by module name (the latest per module)
REGISTRATIONS: dict[str, Registration] = {}


#: upstream's names for the plugin's methods (registered under them too, subject to the take-over rules)
_UPSTREAM_NAMES = ("spilt", "caa")


def _steering_entries(names: list[str]) -> dict[str, str]:
    """EasyEdit name → plugin method: each method under its own name and upstream's (``spilt``, ``caa``)."""
    entries = {}
    for name in names:
        entries[name] = name
        entries.update({alias: name for alias, target in ALIASES.items() if target == name and alias in _UPSTREAM_NAMES})
    return entries


def _import_easyedit(module_name: str) -> tuple[Any | None, bool]:
    """``(module, failed)``: the module, or None with ``failed`` False when EasyEdit is not on
    ``sys.path`` and True when EasyEdit is there but its own import raised (logged at WARNING with
    the real exception)."""
    try:
        return importlib.import_module(module_name), False
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            logger.debug("EasyEdit registry %s not on sys.path: %s", module_name, exc)
            return None, False
        error: Exception = exc
    except Exception as exc:  # noqa: BLE001 - EasyEdit's own import-time failures, reported as they are
        error = exc
    logger.warning("EasyEdit's %s failed to import (%s: %s); nothing registered there", module_name,
                   type(error).__name__, error)
    return None, True


def _register_steering(mod: Any, names: list[str], *, keep_upstream: bool, overwrite: bool) -> Registration:
    reg = Registration(mod.__name__)
    hp_dict = getattr(mod, "HYPERPARAMS_CLASS_DICT", None)
    fn_table = getattr(mod, "METHOD_FNS", None)
    methods = getattr(mod, "METHODS_CLASS_DICT", None)
    upstream = set(hp_dict or {}) | set(fn_table or {})
    taken: list[str] = []
    for key, name in _steering_entries(names).items():
        if key in upstream:
            ours = isinstance(fn_table, dict) and fn_table.get(key, {}).get("train", "").startswith("easyedit_split.")
            replace = ours or overwrite or (key in TAKE_OVER and not keep_upstream)
            if not replace:
                reg.kept.append(key)
                continue
            if not ours:
                reg.taken_over.append(key)
        else:
            reg.added.append(key)
        taken.append(key)
        pair = {"train": resolve(f"{_EE_HP}:EasyEdit{_hp_class_name(name, 'train')}"),
                "apply": resolve(f"{_EE_HP}:EasyEdit{_hp_class_name(name, 'apply')}")}
        if isinstance(hp_dict, dict):
            hp_dict[key] = pair
        if isinstance(fn_table, dict):
            fn_table[key] = dict(METHOD_FNS[name])
        if isinstance(methods, dict):  # older commits hold the functions themselves
            methods[key] = METHODS_CLASS_DICT[name]
    _require_datasets(taken)
    return reg


def _extend_evaluator() -> bool:
    """Make EasyEdit's steering ``Evaluator`` accept ``preference_utility`` (in memory), now if
    ``steer.evaluate.evaluate`` is imported, else as soon as it is: importing it here would pull in
    EasyEdit's evaluation dependencies (nltk, openai) for every registration."""
    from easyedit_split.easyedit.evaluator import EVALUATOR_MODULE, patch_evaluator
    from easyedit_split.easyedit.import_hooks import after_import

    after_import(EVALUATOR_MODULE, patch_evaluator, key="preference_utility")
    return True


def _hp_class_name(name: str, kind: str) -> str:
    return HYPERPARAMS_CLASS_DICT_TARGETS[name][kind].rpartition(":")[2]


def _require_datasets(keys: list[str]) -> None:
    """Add the plugin's names to EasyEdit's ``REQUIRED_DATASET_METHODS`` (in memory): its
    ``BaseVectorGenerator`` hands the training data only to methods listed there."""
    try:
        gen = importlib.import_module(_STEER_GENERATORS)
    except Exception as exc:  # noqa: BLE001
        logger.warning("EasyEdit's %s failed to import (%s: %s): its generator will not pass datasets to %s",
                       _STEER_GENERATORS, type(exc).__name__, exc, ", ".join(keys))
        return
    required = getattr(gen, "REQUIRED_DATASET_METHODS", None)
    if isinstance(required, list):
        required.extend(k for k in keys if k not in required)


def _register_editor(*, overwrite: bool, imported: Any) -> bool:
    """SPLIT into EasyEdit's ``ALG_DICT``: into the already imported registry module, else by importing
    ``easyeditor`` through the shim; a failing import is logged at WARNING with its real exception."""
    from easyedit_split.editing.split_editor import insert_editor, register_editor

    if imported is not None:
        return insert_editor(imported, overwrite=overwrite)
    try:
        return register_editor(overwrite=overwrite)
    except ImportError as exc:
        logger.warning("easyeditor could not be imported (%s: %s); the SPLIT editor is not registered",
                       type(exc).__name__, exc)
        return False


def register_with_easyedit(names: tuple[str, ...] | None = None, *, keep_upstream: bool = False,
                           overwrite: bool = False, editing: bool = False) -> list[str]:
    """Insert the plugin's methods into EasyEdit's registries (in memory; no EasyEdit file is touched).

    Steering (``steer.utils.alg_dict``): ``HYPERPARAMS_CLASS_DICT`` gets the plugin's classes with
    EasyEdit's base keys (:mod:`easyedit_split.easyedit.easyedit_hparams`), ``METHOD_FNS`` the lazy
    ``"easyedit_split.easyedit.entry_points:generate_<m>"`` / ``apply_<m>`` targets (older commits: the
    functions in ``METHODS_CLASS_DICT``), and ``REQUIRED_DATASET_METHODS`` the registered names, so
    that EasyEdit's generator passes them its dataset. SPLIT is registered as ``split`` and upstream's
    ``spilt``. Upstream's ``spilt``/``sft``/``reps`` (:data:`TAKE_OVER`, which cannot run on
    transformers 5) are taken over unless ``keep_upstream``; other upstream names (``caa``) are kept
    unless ``overwrite``. The result is logged at WARNING: which names were added, taken over and kept.

    Knowledge editing (``easyeditor.util.alg_dict``): where it is already imported, or with
    ``editing=True`` (which imports ``easyeditor`` through the package's import shim, see
    :func:`easyedit_split.editing.register_editor`), ``ALG_DICT`` gets ``SPLIT``.

    Returns the module names registered into. EasyEdit missing is logged at WARNING (nothing was
    registered); EasyEdit present but failing to import is logged at WARNING with its real exception.
    """
    wanted = [canonical_method(n) for n in (names or METHOD_NAMES)]
    done = []
    steer_mod, steer_failed = _import_easyedit(_STEER_REGISTRY)
    if steer_mod is not None:
        if any(hasattr(steer_mod, t) for t in ("HYPERPARAMS_CLASS_DICT", "METHOD_FNS", "METHODS_CLASS_DICT")):
            reg = _register_steering(steer_mod, wanted, keep_upstream=keep_upstream, overwrite=overwrite)
            reg.evaluator = _extend_evaluator()
            REGISTRATIONS[_STEER_REGISTRY] = reg
            logger.warning("%s", reg.summary())
            done.append(_STEER_REGISTRY)
        else:
            logger.warning("%s has none of HYPERPARAMS_CLASS_DICT/METHOD_FNS/METHODS_CLASS_DICT; nothing registered",
                           _STEER_REGISTRY)
    imported = sys.modules.get(_EDIT_REGISTRY)
    if (editing or imported is not None) and _register_editor(overwrite=overwrite, imported=imported):
        REGISTRATIONS[_EDIT_REGISTRY] = Registration(_EDIT_REGISTRY, added=["SPLIT"])
        logger.warning("%s", REGISTRATIONS[_EDIT_REGISTRY].summary())
        done.append(_EDIT_REGISTRY)
    if steer_mod is None and not steer_failed and not done:
        logger.warning("EasyEdit not found on sys.path (tried %s): nothing was registered; install EasyEdit or add "
                       "its checkout to sys.path (the plugin itself runs standalone)", _STEER_REGISTRY)
    return done
