"""Every edit an EasyEdit editor makes, expressed as updates ``(ΔW, Δb)`` of the unified view.

:class:`EditRecorder` wraps ``BaseEditor.apply_algo`` (an attribute of the editor instance, so
nothing in EasyEdit changes). After each call — i.e. after the editor has changed the model and
before ``BaseEditor`` scores and restores it — the edit is turned into updates against a
*reference* copy of the unedited model (the same checkpoint, loaded separately):

* an editor that returns the original weights it changed (FT, ROME, MEMIT, SPLIT …): the changed
  parameters are read from the edited model and
  :func:`~easyedit_split.adapters.builders.from_edited_weights` gives ``ΔW = W_edited − W_reference`` (and
  ``Δb``) as :class:`~easyedit_split.core.updates.LocalWeightUpdate` s; the returned originals are checked
  against the reference first, so a reference that is not the editor's base model is an error;
* an editor that returns a peft model (LoRA, QLoRA, DPO): its LoRA factors become
  :class:`~easyedit_split.core.updates.LoRAUpdate` s via :func:`~easyedit_split.adapters.builders.from_peft`.

The updates are exact: merged at ``m = 1`` they reproduce the edited weights (up to fp32 rounding
of the difference), and ``m`` scales the edit continuously.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from easyedit_split.adapters import builders
from easyedit_split.core.updates import Update
from easyedit_split.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["CapturedEdit", "EditRecorder", "edit_as_updates", "recording"]


@dataclass
class CapturedEdit:
    """One call of the editor: its requests' prompts, the updates it amounts to, and its time."""

    index: int
    prompts: list[str]
    updates: list[Update]
    seconds: float
    note: str = ""

    def delta_norm(self) -> float:
        """Frobenius norm of all ``ΔW`` and ``Δb`` of the edit."""
        total = 0.0
        for u in self.updates:
            for t in (u.delta_weight(), u.delta_bias()):
                if t is not None:
                    total += float(t.detach().float().pow(2).sum())
        return total ** 0.5


def _is_peft(model: nn.Module) -> bool:
    return any(isinstance(getattr(m, "lora_A", None), nn.ModuleDict) for m in model.modules())


def edit_as_updates(reference: nn.Module, edited: nn.Module, weights_copy: Any) -> tuple[list[Update], str]:
    """The updates an edit amounts to (see the module doc), and a note when it changed nothing."""
    if _is_peft(edited):
        return builders.from_peft(edited, reference), ""
    if callable(weights_copy) or not weights_copy:
        raise InputError(
            "the editor returned no original weights (weights_copy is "
            f"{'a restore function' if callable(weights_copy) else 'empty'}); its edit cannot be expressed as "
            "a weight update (editors such as KN, GRACE and WISE keep their own state)")
    params = dict(edited.named_parameters())
    ref_sd = reference.state_dict()
    changed: dict[str, torch.Tensor] = {}
    for name, original in weights_copy.items():
        if name not in params:
            raise InputError(f"the editor changed {name!r}, which is not a parameter of the edited model")
        if name not in ref_sd or not torch.equal(ref_sd[name].cpu(), original.detach().cpu().to(ref_sd[name].dtype)):
            raise InputError(f"the reference model's {name} differs from the editor's original weights: load the "
                             "reference from the same checkpoint and dtype as the editor's model")
        changed[name] = params[name].detach().clone()
    if all(torch.equal(t.cpu(), ref_sd[name].cpu().to(t.dtype)) for name, t in changed.items()):
        return [], "the edit changed no weight"
    return builders.from_edited_weights(reference, changed), ""


class EditRecorder:
    """Callable that stands in for ``editor.apply_algo`` and records each edit as updates."""

    def __init__(self, apply_algo: Callable, reference: nn.Module) -> None:
        self.apply_algo = apply_algo
        self.reference = reference
        self.edits: list[CapturedEdit] = []

    def __call__(self, model, tok, requests, hparams, *args, **kwargs):
        start = time.perf_counter()
        edited, weights_copy = self.apply_algo(model, tok, requests, hparams, *args, **kwargs)
        seconds = time.perf_counter() - start
        updates, note = edit_as_updates(self.reference, edited, weights_copy)
        prompts = [r.get("prompt", "") for r in requests]
        self.edits.append(CapturedEdit(len(self.edits), prompts, updates, seconds, note))
        if note:
            logger.warning("edit %d (%s): %s", len(self.edits) - 1, prompts[:1], note)
        return edited, weights_copy


@contextlib.contextmanager
def recording(editor: Any, reference: nn.Module) -> Iterator[EditRecorder]:
    """Record the edits of an EasyEdit ``BaseEditor`` (``editor.apply_algo`` is put back on exit)."""
    original = editor.apply_algo
    recorder = EditRecorder(original, reference)
    editor.apply_algo = recorder
    try:
        yield recorder
    finally:
        editor.apply_algo = original

