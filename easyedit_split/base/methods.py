"""The method table and the form table: every other list of method or form names is derived from here.

One :class:`MethodSpec` row per control method (canonical name, the spellings EasyEdit and papers use,
the training and applying hparams classes, the objective it trains, whether that objective needs the
unsteered model's losses as a reference) and one :class:`FormSpec` row per update form (name, aliases,
the :class:`~easyedit_split.core.updates.Update` class, which rebuilds itself from its saved config with
``from_config``). Classes are named by lazy ``"module:attr"`` targets so that importing this table
imports no torch or training code; :func:`resolve` imports one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from easyedit_split.errors import EasyEditSplitError, InputError

__all__ = [
    "FORMS",
    "FORM_NAMES",
    "INTERVENTION_TYPE_NAMES",
    "METHODS",
    "METHOD_NAMES",
    "FormSpec",
    "MethodSpec",
    "UnknownMethodError",
    "canonical_form",
    "canonical_method",
    "hparams_class",
    "method_spec",
    "resolve",
]

_TRAIN_HP = "easyedit_split.training.hparams"
_APPLY_HP = "easyedit_split.core.apply_hparams"


@dataclass(frozen=True)
class MethodSpec:
    name: str
    aliases: tuple[str, ...]  # other names that mean this method everywhere (case-insensitive)
    train_hparams: str  # "module:Class"
    apply_hparams: str  # "module:Class"
    objective: str | None  # the objective trained (training.trainer.compute_objective); None: train-free
    needs_reference: bool  # the objective compares with the unsteered model's losses
    #: alg_name values the hparams class accepts besides the names above (upstream quirks)
    also_accepts: tuple[str, ...] = ()

    @property
    def trained(self) -> bool:
        return self.objective is not None

    def alg_names(self) -> tuple[str, ...]:
        """Every accepted ``alg_name``: names, aliases, ``<name>_<form>`` spellings and ``also_accepts``."""
        names = (self.name, *self.aliases)
        with_forms = tuple(f"{n}_{f}" for n in names for f in FORM_NAMES)
        return (*names, *with_forms, *self.also_accepts)


@dataclass(frozen=True)
class FormSpec:
    name: str
    aliases: tuple[str, ...]
    update_class: str  # "module:Class"


METHODS: tuple[MethodSpec, ...] = (
    # upstream spells SPLIT "spilt"; its SPLIT experiment files say alg_name: sft (EasyEdit's SFT trainer
    # with the SPLIT terms switched on), so the SPLIT hparams class also accepts "sft"
    MethodSpec("split", ("spilt", "our", "ours"), f"{_TRAIN_HP}:SplitHyperParams", f"{_APPLY_HP}:ApplySplitHyperParams",
               "split", False, also_accepts=("sft",)),
    MethodSpec("sft", (), f"{_TRAIN_HP}:SFTHyperParams", f"{_APPLY_HP}:ApplySFTHyperParams", "sft", False),
    # RePS is reference-free (scaled SimPO); reps_reference_scale opts into upstream's reference scale
    MethodSpec("reps", (), f"{_TRAIN_HP}:RePSHyperParams", f"{_APPLY_HP}:ApplyRePSHyperParams", "reps", False),
    # BiPO is DPO applied in both directions, with the unsteered model as the reference
    MethodSpec("dpo", ("bipo",), f"{_TRAIN_HP}:DPOHyperParams", f"{_APPLY_HP}:ApplyDPOHyperParams", "dpo", True),
    MethodSpec("diffmean", ("caa", "diff_mean", "mean_diff"), f"{_TRAIN_HP}:DiffMeanHyperParams",
               f"{_APPLY_HP}:ApplyDiffMeanHyperParams", None, False),
)

FORMS: tuple[FormSpec, ...] = (
    FormSpec("vector", (), "easyedit_split.core.updates:VectorUpdate"),
    FormSpec("lora", (), "easyedit_split.core.updates:LoRAUpdate"),
    # EasyEdit's intervention_method: weight means a local weight update
    FormSpec("local_weight", ("weight", "localweight"), "easyedit_split.core.updates:LocalWeightUpdate"),
)

#: EasyEdit's ``intervention_type`` values: how a steering vector acts (``core.updates.INTERVENTION_TYPES``
#: maps each to its class); every form has ``addition``, only a vector has ``clamping``
INTERVENTION_TYPE_NAMES: tuple[str, ...] = ("addition", "clamping")

METHOD_NAMES: tuple[str, ...] = tuple(m.name for m in METHODS)
FORM_NAMES: tuple[str, ...] = tuple(f.name for f in FORMS)

_METHOD_BY_NAME = {n: m for m in METHODS for n in (m.name, *m.aliases)}
_FORM_BY_NAME = {n: f for f in FORMS for n in (f.name, *f.aliases)}


class UnknownMethodError(EasyEditSplitError, KeyError):
    """A method name that is no method or alias of the table (a ``KeyError`` too, as for a mapping)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def resolve(target: str) -> Any:
    """Import ``"module:attr"``."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def canonical_method(name: str) -> str:
    """Case-insensitive method name with aliases and a ``_<form>`` suffix resolved; an
    :class:`UnknownMethodError` lists the known names."""
    key = str(name).strip().lower()
    if key not in _METHOD_BY_NAME:
        for form in FORM_NAMES:
            stem = key.removesuffix(f"_{form}")
            if stem != key and stem in _METHOD_BY_NAME:
                key = stem
                break
    if key not in _METHOD_BY_NAME:
        aliases = sorted(n for m in METHODS for n in m.aliases)
        raise UnknownMethodError(f"unknown method {name!r}; known: {', '.join(METHOD_NAMES)} (aliases: {', '.join(aliases)})")
    return _METHOD_BY_NAME[key].name


def method_spec(name: str) -> MethodSpec:
    return _METHOD_BY_NAME[canonical_method(name)]


def canonical_form(name: str, source: str | None = None) -> str:
    """Case-insensitive form name with aliases resolved. An unknown name raises InputError listing the
    forms; with ``source`` (an hparams file), an HParamsError naming it and ``intervention_method``."""
    key = str(name).strip().lower()
    if key not in _FORM_BY_NAME:
        if source is not None:
            from easyedit_split.base.hparams_io import HParamsError

            raise HParamsError(f"{source}: key 'intervention_method' is {name!r}; use {', '.join(FORM_NAMES)}")
        raise InputError(f"unknown update form {name!r}; use one of {', '.join(FORM_NAMES)}")
    return _FORM_BY_NAME[key].name


def hparams_class(name: str, kind: str = "train") -> type:
    """The ``train`` or ``apply`` hparams class of a method (any accepted spelling)."""
    spec = method_spec(name)
    if kind not in ("train", "apply"):
        raise InputError(f"kind must be 'train' or 'apply', got {kind!r}")
    return resolve(spec.train_hparams if kind == "train" else spec.apply_hparams)
