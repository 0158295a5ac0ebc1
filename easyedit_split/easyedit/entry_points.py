"""EasyEdit entry points: ``generate_<method>(hparams, dataset, model=None, dataset_name=None)`` and
``apply_<method>(hparams, pipline=None, vector=None)`` for split, sft, reps, dpo and diffmean.

``generate_*`` trains (or, for DiffMean, computes) one update per layer in ``hparams.layers`` and
returns ``{f"layer_{L}": state}`` where ``state`` is EasyEdit's layout (vector: a ``[d]`` tensor;
LoRA: ``{"lora_A": [d_in, r], "lora_B": [r, d_out]}`` with ``Δh = x·A·B``; local weight:
``{"weight": [d_in, d_out], "bias": [d_out]}``). With ``save_vectors`` it writes, in
``steer_vector_output_dir/<method>_<form>/``, this plugin's ``layer_{L}.safetensors`` (with
metadata) and an EasyEdit-compatible ``layer_{L}.pt`` holding tensors only (readable with
``torch.load(weights_only=True)``). Nothing is ever pickled beyond plain tensors.

``apply_*`` steers an EasyEdit model wrapper (``pipline.model``, ``.tokenizer``, ``.device``) in
hook mode (or merged, ``mode: merged``). The live handles are kept on the wrapper as
``pipline.easyedit_split_steering``; :func:`remove_steering` takes them off again.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from easyedit_split.adapters.builders import from_easyedit_pt
from easyedit_split.base.hparams_io import HParamsError, HyperParams
from easyedit_split.base.methods import canonical_form, hparams_class
from easyedit_split.core.apply import steer
from easyedit_split.core.apply_hparams import ApplyHyperParams
from easyedit_split.core.easyedit_layout import (
    easyedit_layout_refusal,
    from_easyedit_state,
    to_easyedit_state,
)
from easyedit_split.core.serialization import load_updates
from easyedit_split.core.updates import Update
from easyedit_split.data.formats import pairs_from_records
from easyedit_split.data.pairs import PolarityPair, load_pairs
from easyedit_split.easyedit.easyedit_hparams import is_easyedit_hparams
from easyedit_split.easyedit.host import attach_steering, detach_steering, easyedit_loaded, shared_wrapper
from easyedit_split.errors import InputError
from easyedit_split.training.api import output_folder, train_layers

logger = logging.getLogger(__name__)

__all__ = [
    "apply",
    "apply_diffmean",
    "apply_dpo",
    "apply_reps",
    "apply_sft",
    "apply_split",
    "dataset_to_pairs",
    "from_easyedit_state",
    "generate",
    "generate_diffmean",
    "generate_dpo",
    "generate_reps",
    "generate_sft",
    "generate_split",
    "output_folder",
    "remove_steering",
    "to_easyedit_state",
    "unwrap_model",
]

# ------------------------------------------------------------------------------------------ data


def dataset_to_pairs(dataset: Any, dataset_name: str | None = None) -> list[PolarityPair]:
    """EasyEdit's list of dicts (see :func:`~easyedit_split.data.formats.pairs_from_records`), a list of
    :class:`PolarityPair`, a data file or a built-in dataset name."""
    if isinstance(dataset, (str, os.PathLike)):
        return load_pairs(dataset)
    return pairs_from_records(dataset, dataset_name or "dataset")


# ------------------------------------------------------------------------------------------ formats


def unwrap_model(model: Any) -> tuple[nn.Module, Any]:
    """(HF model, tokenizer) from an EasyEdit wrapper, a ``(model, tokenizer)`` tuple, or a model with
    ``.tokenizer``."""
    if isinstance(model, tuple):
        return model[0], model[1]
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module) and hasattr(model, "tokenizer") and not hasattr(model, "lm_head"):
        return inner, model.tokenizer
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        raise InputError("pass model as an EasyEdit wrapper (.model/.tokenizer) or a (model, tokenizer) tuple")
    return model, tok


def _load(hp: Any, model: Any) -> tuple[nn.Module, Any]:
    # inside EasyEdit the wrapper loaded here is shared: the applier will reuse it
    return unwrap_model(model if model is not None else _load_pipline(hp, unsteered=True))


def _coerce_hparams(hparams: Any, method: str, kind: str) -> Any:
    cls = hparams_class(method, kind)
    if isinstance(hparams, HyperParams):
        return hparams
    if isinstance(hparams, Mapping):
        return cls.from_dict(hparams)
    return cls.from_hparams(hparams)


# ------------------------------------------------------------------------------------------ generate


def generate(method: str, hparams: Any, dataset: Any, model: Any = None, dataset_name: str | None = None, *,
             resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``method`` on ``dataset`` for every layer of ``hparams.layers``; see module doc."""
    hp = _coerce_hparams(hparams, method, "train")
    pairs = None if dataset is None else dataset_to_pairs(dataset, dataset_name)
    base, tokenizer = _load(hp, model)
    result = train_layers(hp, pairs, base, tokenizer, resume=resume, progress=progress)
    # a clamped vector has no EasyEdit layout (EasyEdit would add it): it is handed on as the update itself,
    # which only the plugin's apply (registered for this method) reads
    return {f"layer_{r.layer}": r.update if easyedit_layout_refusal(r.update) else to_easyedit_state(r.update)
            for r in result.layers}


# ------------------------------------------------------------------------------------------ apply


def _updates_for(hp: ApplyHyperParams, model: nn.Module, vector: Any) -> list[tuple[int, Update]]:
    form = canonical_form(hp.intervention_method)
    comp = hp.intervention_components
    out = []
    for layer in hp.layers:
        if vector is not None:
            if isinstance(vector, Mapping) and f"layer_{layer}" in vector:
                state = vector[f"layer_{layer}"]
            elif isinstance(vector, (list, tuple)) and all(isinstance(u, Update) for u in vector):
                out.extend((u.site.layer, u) for u in vector)
                return out
            else:
                state = vector
            out.append((layer, state if isinstance(state, Update) else from_easyedit_state(state, model, layer, form, comp)))
            continue
        if not hp.steer_vector_load_dir:
            raise HParamsError("apply: no vector given and steer_vector_load_dir is not set")
        folder = Path(hp.steer_vector_load_dir)
        ours, pt = folder / f"layer_{layer}.safetensors", folder / f"layer_{layer}.pt"
        if ours.exists():
            out.extend((layer, u) for u in load_updates(ours, model).updates)
        elif pt.exists():
            # the file says where a LoRA/local weight acts; only an explicit apply-YAML component overrides it
            out.append((layer, from_easyedit_pt(pt, model, layer=layer,
                                                component=None if form == "vector" else comp)))
        else:
            raise FileNotFoundError(f"neither {ours} nor {pt} exists")
    return out


def apply(method: str, hparams: Any, pipline: Any = None, vector: Any = None) -> Any:
    """Steer ``pipline`` (EasyEdit's model wrapper, or a bare HF model) with the updates of ``method``.

    With no ``pipline``, the model is loaded as EasyEdit's own appliers load it (its ``get_model``:
    wrapper, ``dtype``, ``device``) when running inside EasyEdit, else with the plugin's loader.
    The hooks stay on the wrapper under ``hparams.alg_name``; the wrapper's ``reset_all()`` /
    ``reset(alg_name)`` and :func:`remove_steering` take them off.
    """
    hp = _coerce_hparams(hparams, method, "apply")
    if pipline is None:
        pipline = _load_pipline(hp)
    model = pipline.model if isinstance(getattr(pipline, "model", None), nn.Module) else pipline
    key = str(hp.alg_name or method).lower()
    stack = contextlib.ExitStack()
    stack.easyedit_split_states = []  # type: ignore[attr-defined]  # hook-mode handles, see suspended_steering
    try:
        for i, (layer, update) in enumerate(_updates_for(hp, model, vector)):
            update.to(next(model.parameters()).device)
            state = stack.enter_context(steer(model, [update], hp.multiplier_for(i), mode=hp.mode,
                                              positions=hp.intervention_positions))
            if hasattr(state, "set_multiplier"):
                stack.easyedit_split_states.append(state)  # type: ignore[attr-defined]
            logger.info("%s: steering layer %d (%s) with m=%s", key, layer, update.form, hp.multiplier_for(i))
    except BaseException:
        stack.close()
        raise
    attach_steering(pipline, key, stack)
    return pipline


def _load_pipline(hp: Any, *, unsteered: bool = False) -> Any:
    """The model of ``hp`` as a wrapper: EasyEdit's (shared, see :func:`shared_wrapper`) when running
    inside EasyEdit, else the plugin's loader in a :class:`_Wrapper`."""
    if is_easyedit_hparams(hp) and easyedit_loaded():
        return shared_wrapper(hp, unsteered=unsteered)
    from easyedit_split.core.models import load_model

    model, tokenizer = load_model(hp.model_name_or_path, dtype=hp.torch_dtype, device=hp.device)
    return _Wrapper(model, tokenizer)


def remove_steering(pipline: Any, method: str | None = None) -> bool:
    """Take off the steering ``apply_*`` put on ``pipline`` (of one ``alg_name``, or all); True when there was some."""
    return detach_steering(pipline, None if method is None else str(method).lower())


class _Wrapper:
    """The attributes of EasyEdit's model wrapper that its applier and generation loop use, for a
    model loaded outside EasyEdit."""

    VLLM_model = None

    def __init__(self, model: nn.Module, tokenizer: Any) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.device = next(model.parameters()).device

    def reset_all(self) -> None:
        remove_steering(self)


def _pair(method: str):
    def gen(hparams, dataset=None, model=None, dataset_name=None):
        if dataset is None and is_easyedit_hparams(hparams):
            raise InputError(
                f"EasyEdit called generate_{method} without a dataset: its BaseVectorGenerator passes data only to "
                f"methods in REQUIRED_DATASET_METHODS, and {getattr(hparams, 'alg_name', method)!r} is not there. "
                "Register with easyedit_split.register_with_easyedit() (or `easyedit-split easyedit enable`), "
                "which adds the plugin's names; the plugin does not train on a dataset of its own choosing.")
        return generate(method, hparams, dataset, model, dataset_name)

    def app(hparams, pipline=None, vector=None):
        return apply(method, hparams, pipline, vector)

    gen.__name__, app.__name__ = f"generate_{method}", f"apply_{method}"
    gen.__doc__ = f"EasyEdit entry point: train {method} updates; returns {{'layer_L': state}}."
    app.__doc__ = f"EasyEdit entry point: apply {method} updates to an EasyEdit model wrapper."
    return gen, app


generate_split, apply_split = _pair("split")
generate_sft, apply_sft = _pair("sft")
generate_reps, apply_reps = _pair("reps")
generate_dpo, apply_dpo = _pair("dpo")
generate_diffmean, apply_diffmean = _pair("diffmean")
