"""Export a model with updates merged at a fixed multiplier as a standard Hugging Face checkpoint.

The result loads with plain ``AutoModelForCausalLM.from_pretrained`` (and therefore with serving
engines that read Hugging Face folders, such as vLLM): no plugin code is needed at inference time.

The bias problem. A merged ``Δb`` gives a module a bias it did not have (e.g. Llama's ``down_proj``,
where a residual-stream vector folds). A plain config (``mlp_bias: false``) would build the module
without a bias on reload and silently drop it. So the export finds, by building the architecture on
the meta device (no memory), which config flag makes it create that bias — ``mlp_bias`` for
Llama's MLP, ``attention_bias`` for the attention projections of Llama, Gemma, Qwen3, OLMo … — sets
it in the exported config, and writes zeros for every other bias the flag brings in (``gate_proj``,
``up_proj``; ``q/k/v_proj``). Architectures whose module has no such flag (Mistral's and Qwen2's
``down_proj`` and ``o_proj``, every Gemma-2/3 ``down_proj``) are refused with an error that suggests
hook mode or a form without ``Δb`` (LoRA). GPT-2 and GPT-NeoX always have these biases.

The write is atomic (:func:`~easyedit_split.base.atomic_io.atomic_dir`: a temporary folder beside the destination,
renamed on success; the folder of a killed export is removed by the next export to the same name; a
full disk is an error naming the destination) and the in-memory model is restored exactly (unmerged, temporary zero biases removed, config restored).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from easyedit_split import __version__
from easyedit_split.base.atomic_io import atomic_dir
from easyedit_split.core.apply import MergeError, merge_updates
from easyedit_split.core.updates import Update

logger = logging.getLogger(__name__)

__all__ = ["BIAS_FLAGS", "ExportError", "ExportResult", "export_merged", "plan_bias_flags"]

#: config flags that make an architecture build biases on its linear modules, tried in this order.
BIAS_FLAGS: tuple[str, ...] = ("mlp_bias", "attention_bias")

EXPORT_INFO = "easyedit_split_export.json"


class ExportError(MergeError):
    """The merged model cannot be written as a checkpoint that reloads exactly."""


@dataclass
class ExportResult:
    output_dir: Path
    multiplier: float
    config_changes: dict[str, Any] = field(default_factory=dict)
    zero_biases: list[str] = field(default_factory=list)
    merged_modules: list[str] = field(default_factory=list)


def _skeleton_params(config) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the architecture ``config`` builds (on the meta device)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    return {name: tuple(p.shape) for name, p in skeleton.named_parameters()}


def _module_names(model: nn.Module) -> dict[int, str]:
    return {id(m): name for name, m in model.named_modules()}


def plan_bias_flags(model: nn.Module, new_bias_modules: list[str]) -> tuple[dict[str, Any], Any]:
    """Config flags (and the modified config) under which the architecture creates a bias on every
    module in ``new_bias_modules``. Raises :class:`ExportError` when no flag in :data:`BIAS_FLAGS` does."""
    config = copy.deepcopy(model.config)
    changes: dict[str, Any] = {}
    missing = [f"{m}.bias" for m in new_bias_modules]
    params = _skeleton_params(config)
    for flag in BIAS_FLAGS:
        still = [b for b in missing if b not in params]
        if not still:
            break
        if not hasattr(config, flag) or getattr(config, flag) is True:
            continue
        trial = copy.deepcopy(config)
        setattr(trial, flag, True)
        trial_params = _skeleton_params(trial)
        if any(b in trial_params for b in still):
            config, params = trial, trial_params
            changes[flag] = True
    still = [b for b in missing if b not in params]
    if still:
        mt = getattr(model.config, "model_type", type(model).__name__)
        raise ExportError(
            f"cannot export: merging adds a bias to {', '.join(s.removesuffix('.bias') for s in still)}, but a "
            f"{mt!r} checkpoint has no such bias and no config flag ({', '.join(BIAS_FLAGS)}) makes the "
            "architecture create one, so plain transformers would drop it on reload. Use hook mode "
            "(easyedit-split generate --mode hook / apply_updates), or an update without Δb on that module "
            "(a LoRA update, or a local-weight update whose bias is zero)."
        )
    return changes, config


@contextlib.contextmanager
def _temporary_zero_biases(model: nn.Module, names: list[str], shapes: dict[str, tuple[int, ...]]):
    added: list[nn.Module] = []
    try:
        for name in names:
            module_path = name.removesuffix(".bias")
            module = model.get_submodule(module_path)
            if getattr(module, "bias", None) is not None:
                continue
            w = module.weight
            module.bias = nn.Parameter(
                torch.zeros(shapes[name], dtype=w.dtype, device=w.device), requires_grad=False
            )
            added.append(module)
        yield
    finally:
        for module in added:
            module.bias = None


def _drop_zero_updates(updates: list[Update]) -> list[Update]:
    """Merging an all-zero Δb adds nothing; a local-weight update with zero bias is treated as ΔW only."""
    out = []
    for u in updates:
        db = u.delta_bias()
        if db is not None and u.delta_weight() is not None and not bool(db.detach().abs().any()):
            from easyedit_split.core.updates import LocalWeightUpdate

            if isinstance(u, LocalWeightUpdate):
                proxy = _WeightOnly(u)
                out.append(proxy)
                continue
        out.append(u)
    return out


class _WeightOnly(Update):
    """A view of an update without its (all-zero) Δb."""

    def __init__(self, inner: Update) -> None:
        super().__init__(inner.site, inner.d_in, inner.d_out)
        self.form = inner.form
        self._inner = [inner]  # not registered as a submodule

    def delta_weight(self):
        return self._inner[0].delta_weight()

    def delta_bias(self):
        return None

    def delta(self, h_in):
        return torch.nn.functional.linear(h_in, self._inner[0].delta_weight())


def check_export_destination(dest: str | os.PathLike, *, overwrite: bool, model_path: Any = None) -> None:
    """Where an export may go: a new folder; with ``overwrite``, also an empty folder or an earlier export
    (one holding ``easyedit_split_export.json``) — never a folder of other files (``--overwrite`` replaces
    the whole folder), the model's own folder or one holding it."""
    from easyedit_split.base.atomic_io import refuse_replacing_inputs

    dest = Path(dest)
    refuse_replacing_inputs(dest, {"the model folder": model_path if model_path else None}, what="export output",
                            replaces_folder=True)
    if not dest.exists():
        return
    if not overwrite:
        raise ExportError(f"output folder {dest} already exists; choose another, or pass --overwrite "
                          "(overwrite=True in Python) to replace it")
    if not dest.is_dir():
        raise ExportError(f"output {dest} is a file, not an export folder; choose a folder")
    if any(dest.iterdir()) and not (dest / EXPORT_INFO).is_file():
        names = sorted(p.name for p in dest.iterdir())
        raise ExportError(f"output folder {dest} is not an earlier export (it has no {EXPORT_INFO}; it holds "
                          f"{', '.join(names[:5])}{' …' if len(names) > 5 else ''}); --overwrite replaces only an "
                          "earlier export: choose a new folder, or empty this one yourself")


def export_merged(
    model: nn.Module,
    tokenizer: Any,
    updates: Update | Iterable[Update],
    multiplier: float,
    output_dir: str | os.PathLike,
    *,
    safe_merge: bool = True,
    overwrite: bool = False,
    max_shard_size: str | int = "5GB",
) -> ExportResult:
    """Write ``model`` with ``multiplier·update`` merged as a Hugging Face folder at ``output_dir``.

    ``tokenizer`` (may be None) is saved alongside. Weights are safetensors. The folder also holds
    ``easyedit_split_export.json`` (multiplier, updates, config changes). ``overwrite`` replaces an
    existing folder (only after the new one is complete). The in-memory model is left unchanged.
    """
    dest = Path(output_dir)
    check_export_destination(dest, overwrite=overwrite, model_path=getattr(model, "name_or_path", None))
    if isinstance(multiplier, torch.Tensor):
        if multiplier.numel() != 1:
            raise ExportError("export takes one scalar multiplier")
        multiplier = float(multiplier)
    m = float(multiplier)
    ups = _drop_zero_updates([updates] if isinstance(updates, Update) else list(updates))
    if not ups:
        raise ExportError("no updates to export")

    handle = merge_updates(model, ups, m, safe_merge=safe_merge)
    try:
        names = _module_names(model)
        merged_modules = [names[k] for k in handle.saved]
        new_bias_modules = [
            names[k] for k, s in handle.saved.items() if not s.had_bias and s.module.bias is not None
        ]
        changes, new_config = (
            plan_bias_flags(model, new_bias_modules) if new_bias_modules else ({}, model.config)
        )
        target = _skeleton_params(new_config)
        current = {n: tuple(p.shape) for n, p in model.named_parameters()}
        extra_biases = sorted(n for n in target if n not in current)
        bad = [n for n in extra_biases if not n.endswith(".bias")]
        unexpected = sorted(n for n in current if n not in target)
        if bad or unexpected:
            raise ExportError(
                f"the exported config would change parameters other than biases: new {bad[:5]}, "
                f"unknown {unexpected[:5]}; refusing to write a checkpoint that may not reload exactly"
            )
        for n, shape in current.items():
            if target[n] != shape:
                raise ExportError(
                    f"parameter {n} has shape {shape} but the exported config expects {target[n]}"
                )
        zero_biases = list(extra_biases)

        old_values = {k: getattr(model.config, k) for k in changes}
        with atomic_dir(dest, overwrite=overwrite) as tmp:
            with _temporary_zero_biases(model, zero_biases, target):
                for k, v in changes.items():
                    setattr(model.config, k, v)
                try:
                    model.save_pretrained(str(tmp), safe_serialization=True, max_shard_size=max_shard_size)
                finally:
                    for k, v in old_values.items():
                        setattr(model.config, k, v)
            if tokenizer is not None:
                tokenizer.save_pretrained(str(tmp))
            info = {
                "library": "easyedit-split",
                "library_version": __version__,
                "multiplier": m,
                "updates": [u.config() for u in ups],
                "merged_modules": merged_modules,
                "config_changes": changes,
                "zero_biases_added": zero_biases,
            }
            (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    finally:
        handle.unmerge()
    logger.info(
        "exported %s merged at m=%g to %s (config changes: %s; %d zero biases)",
        ", ".join(merged_modules),
        m,
        dest,
        changes or "none",
        len(zero_biases),
    )
    return ExportResult(dest, m, changes, zero_biases, merged_modules)
