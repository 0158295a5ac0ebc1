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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from .adapters import from_easyedit_pt
from .apply import steer
from .data.pairs import PolarityPair, load_builtin, read_pairs
from .easyedit.host import attach_steering, detach_steering, easyedit_loaded, load_wrapper
from .easyedit.hparams import is_easyedit_hparams
from .easyedit_layout import from_easyedit_state, to_easyedit_state, write_easyedit_pt
from .hparams import HyperParams
from .serialization import load_updates, save_updates
from .training.diffmean import diffmean_update
from .training.hparams import APPLY_HPARAMS, TRAIN_HPARAMS, ApplyHyperParams, canonical_form
from .training.trainer import Trainer, select_pairs
from .updates import Update

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
]

_QUESTION_KEYS = ("question", "input", "prompt")
_POS_KEYS = ("matching", "answer_matching_behavior", "winning_output", "positive")
_NEG_KEYS = ("not_matching", "answer_not_matching_behavior", "losing_output", "negative")


# ------------------------------------------------------------------------------------------ data


def _first(record: Mapping[str, Any], keys: Sequence[str], where: str) -> Any:
    for k in keys:
        if k in record and record[k] is not None:
            return record[k]
    raise ValueError(f"{where}: none of the fields {list(keys)} present (keys: {sorted(record)})")


def dataset_to_pairs(dataset: Any, dataset_name: str | None = None) -> list[PolarityPair]:
    """EasyEdit's list of dicts (``question``/``matching``/``not_matching``, persona keys, or AxBench's
    ``input``/``winning_output``/``losing_output``), a list of :class:`PolarityPair`, a data file or a
    built-in dataset name."""
    if isinstance(dataset, (str, os.PathLike)):
        p = Path(dataset)
        return read_pairs(p) if p.exists() else load_builtin(str(dataset))
    items = list(dataset)
    if items and isinstance(items[0], tuple):
        raise NotImplementedError("multi-concept datasets (a list of (concept_id, rows)) are not supported; "
                                  "train one concept at a time")
    name = dataset_name or "dataset"
    out = []
    for i, rec in enumerate(items):
        if isinstance(rec, PolarityPair):
            out.append(rec)
            continue
        if not isinstance(rec, Mapping):
            raise TypeError(f"{name}[{i}]: expected a dict, got {type(rec).__name__}")
        where = f"{name}[{i}]"
        q, pos, neg = _first(rec, _QUESTION_KEYS, where), _first(rec, _POS_KEYS, where), _first(rec, _NEG_KEYS, where)
        if isinstance(pos, list):
            pos = pos[0]
        if isinstance(neg, list):
            neg = neg[0]
        if not str(pos).strip() or not str(neg).strip():
            raise ValueError(f"{where}: empty answer")
        out.append(PolarityPair(id=str(rec.get("id", i)), question=str(q), positive=str(pos), negative=str(neg),
                                source=f"{name}:{i + 1}"))
    if not out:
        raise ValueError(f"{name}: no examples")
    return out


# ------------------------------------------------------------------------------------------ formats


#: ``alg_name`` spellings EasyEdit's own configs use for their output folders (``spilt_vector``, ``caa_vector``)
_UPSTREAM_FOLDER_NAMES = ("spilt", "caa")


def output_folder(hp: Any) -> Path:
    """``steer_vector_output_dir/<name>_<form>``: ``<name>`` is the method, or upstream's spelling
    where the config uses it (``alg_name: spilt`` → ``spilt_<form>``, ``caa`` → ``caa_vector``),
    which is where EasyEdit's apply configs and ``examples/run_SPILT.py`` look."""
    alg = str(getattr(hp, "alg_name", "")).strip().lower()
    name = alg if alg in _UPSTREAM_FOLDER_NAMES else hp.method
    return Path(hp.steer_vector_output_dir) / f"{name}_{hp.form}"


# ------------------------------------------------------------------------------------------ model


def _unwrap(model: Any) -> tuple[nn.Module, Any]:
    """(HF model, tokenizer) from an EasyEdit wrapper, a ``(model, tokenizer)`` tuple, or a model with
    ``.tokenizer``."""
    if isinstance(model, tuple):
        return model[0], model[1]
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module) and hasattr(model, "tokenizer") and not hasattr(model, "lm_head"):
        return inner, model.tokenizer
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        raise ValueError("pass model as an EasyEdit wrapper (.model/.tokenizer) or a (model, tokenizer) tuple")
    return model, tok


def _load(hp: Any, model: Any) -> tuple[nn.Module, Any]:
    if model is not None:
        return _unwrap(model)
    from .models import load_model

    return load_model(hp.model_name_or_path, dtype=hp.torch_dtype, device=hp.device)


def _coerce_hparams(hparams: Any, table: Mapping[str, type[HyperParams]], method: str) -> Any:
    cls = table[method]
    if isinstance(hparams, HyperParams):
        return hparams
    if isinstance(hparams, Mapping):
        return cls.from_dict(hparams)
    return cls.from_hparams(hparams)


# ------------------------------------------------------------------------------------------ generate


def generate(method: str, hparams: Any, dataset: Any, model: Any = None, dataset_name: str | None = None, *,
             resume: bool = False, progress: bool = True, results: list | None = None) -> dict[str, Any]:
    """Train ``method`` on ``dataset`` for every layer of ``hparams.layers``; see module doc."""
    hp = _coerce_hparams(hparams, TRAIN_HPARAMS, method)
    if dataset is None:
        if not hp.steer_train_dataset:
            raise ValueError("no dataset given and hparams.steer_train_dataset is not set")
        dataset = hp.steer_train_dataset
    pairs = select_pairs(hp, dataset_to_pairs(dataset, dataset_name))
    base, tokenizer = _load(hp, model)
    folder = output_folder(hp)
    out: dict[str, Any] = {}
    for layer in hp.layers:
        if method == "diffmean":
            update = diffmean_update(base, tokenizer, pairs, layer, component=hp.component, hp=hp,
                                     batch_size=hp.batch_size, normalize=hp.normalize)
            if hp.save_vectors:
                save_updates(folder / f"layer_{layer}.safetensors", [update], model=base, method="diffmean",
                             hparams=hp.to_dict(), extra={"layer": layer, "n_train_pairs": len(pairs)})
            result = None
        else:
            trainer = Trainer(base, tokenizer, hp, layer=layer)
            ckpt_dir = hp.checkpoint_dir or (folder / f"checkpoints_layer_{layer}" if hp.checkpoint_every else None)
            result = trainer.train(pairs, output_path=(folder / f"layer_{layer}.safetensors") if hp.save_vectors else None,
                                   checkpoint_dir=ckpt_dir, resume=resume, progress=progress)
            update = result.updates[0]
        state = to_easyedit_state(update)
        if hp.save_vectors:
            write_easyedit_pt(folder / f"layer_{layer}.pt", update)
        out[f"layer_{layer}"] = state
        if results is not None:
            results.append(result if result is not None else update)
    return out


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
            out.append((layer, from_easyedit_state(state, model, layer, form, comp)))
            continue
        if not hp.steer_vector_load_dir:
            raise ValueError("apply: no vector given and steer_vector_load_dir is not set")
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
    hp = _coerce_hparams(hparams, APPLY_HPARAMS, method)
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


def _load_pipline(hp: Any) -> Any:
    if is_easyedit_hparams(hp) and easyedit_loaded():
        return load_wrapper(hp)
    from .models import load_model

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
            raise ValueError(
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
