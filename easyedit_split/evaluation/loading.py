"""One entry point for every update the core can express: :func:`load_any_update`.

Dispatch by what ``spec`` is:

* ``Update`` / list of updates / :class:`~easyedit_split.serialization.UpdateBundle` — as is;
* ``*.safetensors`` in the easyedit-split format — :func:`~easyedit_split.serialization.load_updates`
  (trained SPLIT/SFT/RePS/DPO updates, saved DiffMean vectors); any other ``*.safetensors`` file
  is read as edited weights (a knowledge edit, ``ΔW = W_edited − W_base``);
* ``*.pt`` — an EasyEdit ``layer_{L}.pt`` intervention (:func:`~easyedit_split.adapters.from_easyedit_pt`);
* a folder with ``adapter_config.json`` — a peft LoRA adapter; with ``layer_*.pt`` files — EasyEdit
  interventions (all of them); with ``*.safetensors`` — an edited checkpoint;
* an ``nn.Module`` — a live ``PeftModel`` or an edited model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import adapters
from ..serialization import FORMAT_NAME, UpdateBundle, load_updates
from ..sites import Site
from ..updates import Update

logger = logging.getLogger(__name__)

__all__ = ["LoadedUpdates", "diffmean_from_pairs", "load_any_update"]


@dataclass
class LoadedUpdates:
    updates: list[Update]
    kind: str  # easyedit-split | easyedit-pt | peft | edited-weights | in-memory
    method: str = "unknown"
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __iter__(self):
        return iter(self.updates)

    def __len__(self) -> int:
        return len(self.updates)


def _safetensors_format(path: Path) -> str | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return (fh.metadata() or {}).get("format")
    except Exception as exc:
        raise ValueError(f"{path} is not a readable safetensors file: {exc}") from exc


def load_any_update(spec: Any, model: nn.Module, *, layer: int | None = None) -> LoadedUpdates:
    """Updates from any supported artefact (see module doc); ``layer`` for a ``.pt`` file not named ``layer_N.pt``."""
    if isinstance(spec, LoadedUpdates):
        return spec
    if isinstance(spec, Update):
        return LoadedUpdates([spec], "in-memory")
    if isinstance(spec, UpdateBundle):
        return LoadedUpdates(list(spec.updates), "easyedit-split", spec.method, info={"hparams": spec.hparams})
    if isinstance(spec, (list, tuple)) and spec and all(isinstance(u, Update) for u in spec):
        return LoadedUpdates(list(spec), "in-memory")
    if isinstance(spec, nn.Module):
        if any(hasattr(mod, "lora_A") for mod in spec.modules()):
            return LoadedUpdates(adapters.from_peft(spec, model), "peft", "lora")
        return LoadedUpdates(adapters.from_edited_weights(model, spec), "edited-weights", "edit")
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"cannot load updates from a {type(spec).__name__}")
    p = Path(spec)
    if not p.exists():
        raise FileNotFoundError(f"update path {p} does not exist")
    device = next(model.parameters()).device
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".safetensors":
            if _safetensors_format(p) == FORMAT_NAME:
                bundle = load_updates(p, model)
                return LoadedUpdates(list(bundle.updates), "easyedit-split", bundle.method, str(p),
                                     {"hparams": bundle.hparams, "extra": bundle.extra})
            ups = adapters.from_edited_weights(model, p)
            return LoadedUpdates(_to(ups, device), "edited-weights", "edit", str(p))
        if suffix == ".pt":
            u = adapters.from_easyedit_pt(p, model, layer=layer)
            return LoadedUpdates(_to([u], device), "easyedit-pt", u.form, str(p))
        raise ValueError(f"{p}: unknown update file type {suffix!r} (expected .safetensors or .pt, or a folder)")
    if (p / "adapter_config.json").exists():
        return LoadedUpdates(_to(adapters.from_peft(p, model), device), "peft", "lora", str(p))
    pts = sorted(p.glob("layer_*.pt"))
    if pts:
        ups = [adapters.from_easyedit_pt(f, model) for f in pts]
        return LoadedUpdates(_to(ups, device), "easyedit-pt", ups[0].form, str(p))
    if list(p.glob("*.safetensors")):
        return LoadedUpdates(_to(adapters.from_edited_weights(model, p), device), "edited-weights", "edit", str(p))
    raise ValueError(f"{p}: folder holds no adapter_config.json, layer_*.pt or *.safetensors")


def _to(updates: Sequence[Update], device: torch.device) -> list[Update]:
    return [u.to(device) for u in updates]


def diffmean_from_pairs(model: nn.Module, tokenizer: Any, pairs: Sequence, layer: int, *,
                        component: str = "residual", module_path: str | None = None, batch_size: int = 16) -> Update:
    """A DiffMean (CAA) vector at ``Site(layer, component)`` from polarity pairs: mean site output over
    the answer tokens of positive sequences minus negative sequences."""
    from ..data.encoding import collate_sequences
    from .sweep import encode_for_sweep, pad_id_of

    encoded = encode_for_sweep(tokenizer, pairs)
    pad = pad_id_of(tokenizer)
    dev = next(model.parameters()).device

    def batches(positive: bool):
        out = []
        for s in range(0, len(encoded), batch_size):
            chunk = encoded[s:s + batch_size]
            b = collate_sequences([(e.prompt_ids, e.positive_ids if positive else e.negative_ids) for e in chunk], pad)
            out.append((b.input_ids.to(dev), b.attention_mask.to(dev), b.answer_mask.to(dev)))
        return out

    return adapters.diffmean_vector(model, Site(layer, component, module_path), batches(True), batches(False))
