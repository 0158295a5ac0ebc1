"""Existing control methods expressed as updates ``(ΔW, Δb)``.

* :func:`from_peft` — a peft LoRA adapter (a saved folder, or a live ``PeftModel``).
* :func:`from_easyedit_pt` — an EasyEdit steering artefact: the per-layer files of caa,
  vector_prompt, merge_vector, sae_feature, sta, reps, sft and spilt (layouts in
  :mod:`~easyedit_split.core.easyedit_layout`, layer from the file name) and lm_steer's checkpoint
  (:mod:`~easyedit_split.adapters.lm_steer`), read with ``torch.load(weights_only=True)``. SAE-built
  vectors from a local SAE are in :mod:`~easyedit_split.adapters.sae`; EasyEdit's ``prompt`` is the
  weight-free :class:`~easyedit_split.adapters.prompt_baseline.PromptBaseline`.
* :func:`from_edited_weights` — any knowledge edit given as edited weights (FT, ROME, MEMIT…):
  ``ΔW = W_edited − W_base`` and ``Δb`` (a bias the edit adds included) for every changed module.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from easyedit_split.adapters.lm_steer import LM_STEER_FILE, from_lm_steer
from easyedit_split.core.easyedit_layout import AdapterError, read_easyedit_pt
from easyedit_split.core.sites import SiteError, resolve_site, site_for_module_path
from easyedit_split.core.updates import LocalWeightUpdate, LoRAUpdate, Update, VectorUpdate

logger = logging.getLogger(__name__)

__all__ = ["AdapterError", "from_easyedit_pt", "from_edited_weights", "from_peft"]


# ---------------------------------------------------------------------------------------------
# peft
# ---------------------------------------------------------------------------------------------

_PEFT_PREFIXES = ("base_model.model.", "base_model.")


def _strip_peft_prefix(name: str) -> str:
    for p in _PEFT_PREFIXES:
        if name.startswith(p):
            return name[len(p):]
    return name


def _lora_scale(cfg: Mapping[str, Any], module_path: str, rank: int) -> float:
    alpha = cfg.get("lora_alpha", rank)
    for pattern, value in (cfg.get("alpha_pattern") or {}).items():
        if module_path.endswith(pattern):
            alpha = value
    import math

    return float(alpha) / (math.sqrt(rank) if cfg.get("use_rslora") else rank)


def from_peft(adapter: str | os.PathLike | nn.Module, model: nn.Module, adapter_name: str = "default") -> list[LoRAUpdate]:
    """LoRA updates equal to a peft LoRA adapter on ``model`` (the unwrapped base model).

    ``adapter`` is a folder with ``adapter_config.json`` and ``adapter_model.safetensors`` (read
    directly, peft is not needed) or a live ``PeftModel``. Dropout is ignored (inference).
    """
    if isinstance(adapter, nn.Module):
        return _from_live_peft(adapter, model, adapter_name)
    folder = Path(adapter)
    cfg_path = folder / "adapter_config.json"
    weights_path = folder / "adapter_model.safetensors"
    if not cfg_path.exists():
        raise AdapterError(f"{cfg_path} not found: not a peft adapter folder")
    if not weights_path.exists():
        bin_path = folder / "adapter_model.bin"
        hint = f" (found {bin_path.name}: re-save it with safe_serialization=True)" if bin_path.exists() else ""
        raise AdapterError(f"{weights_path} not found{hint}")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{cfg_path}: not valid JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise AdapterError(f"{cfg_path}: expected a JSON object, got {type(cfg).__name__}")
    if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        raise AdapterError(f"{cfg_path}: peft_type {cfg.get('peft_type')!r} is not LORA")
    from easyedit_split.core.serialization import check_base_model

    check_base_model(cfg.get("base_model_name_or_path"), model, source=str(folder))
    from safetensors.torch import load_file

    try:
        sd = load_file(str(weights_path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for corrupt files
        raise AdapterError(f"{weights_path} is not a readable safetensors file ({exc})") from None
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in sd.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key:
                mod = _strip_peft_prefix(key.split(marker)[0])
                pairs.setdefault(mod, {})[part] = t
    if not pairs:
        raise AdapterError(f"{weights_path} holds no lora_A/lora_B tensors")
    updates = []
    for mod_path, ab in sorted(pairs.items()):
        if set(ab) != {"lora_A", "lora_B"}:
            raise AdapterError(f"{weights_path}: {mod_path} lacks lora_A or lora_B")
        A, B = ab["lora_A"].float(), ab["lora_B"].float()
        rank = _checked_rank(cfg, mod_path, A, B, weights_path)
        updates.append(_lora_for_module(model, mod_path, A, B, _lora_scale(cfg, mod_path, rank)))
    return updates


def _checked_rank(cfg: Mapping[str, Any], mod_path: str, A: torch.Tensor, B: torch.Tensor, source: Path) -> int:
    """The LoRA rank of ``mod_path``: ``A`` is ``[r, in]`` and ``B`` ``[out, r]``, and ``r`` is the config's
    (``rank_pattern`` for this module, else ``r``); an :class:`AdapterError` when they disagree."""
    if A.dim() != 2 or B.dim() != 2 or A.shape[0] != B.shape[1]:
        raise AdapterError(f"{source}: {mod_path} has lora_A {tuple(A.shape)} and lora_B {tuple(B.shape)}, which do not "
                           "make a low-rank product (A is [r, in], B is [out, r]); the adapter is corrupt")
    rank = int(A.shape[0])
    wanted = cfg.get("r")
    patterns = cfg.get("rank_pattern") or {}
    matched = [value for pattern, value in patterns.items() if mod_path.endswith(str(pattern))]
    # a pattern this simple suffix match cannot read (a regex) may give this module any of its ranks
    allowed = {matched[-1]} if matched else {wanted, *patterns.values()}
    if wanted is not None and rank not in allowed:
        raise AdapterError(f"{source}: {mod_path} has rank {rank} tensors, but adapter_config.json says r={wanted!r}; "
                           "the config and the weights are of different adapters — re-save the adapter")
    return rank


def _lora_for_module(model: nn.Module, mod_path: str, A: torch.Tensor, B: torch.Tensor, scale: float) -> LoRAUpdate:
    try:
        site = site_for_module_path(model, mod_path)
        rs = resolve_site(model, site)
    except SiteError as exc:
        raise AdapterError(f"LoRA on {mod_path}: {exc}") from exc
    # peft stores A [r, in], B [out, r] for Conv1D too (fan_in_fan_out only transposes the base weight)
    return LoRAUpdate(site, rs.d_in, rs.d_out, rank=A.shape[0], scale=scale, A=A, B=B)


def _from_live_peft(peft_model: nn.Module, model: nn.Module, adapter_name: str) -> list[LoRAUpdate]:
    updates = []
    for name, module in peft_model.named_modules():
        lora_A = getattr(module, "lora_A", None)
        if not isinstance(lora_A, nn.ModuleDict) or adapter_name not in lora_A:
            continue
        A = module.lora_A[adapter_name].weight.detach().float()
        B = module.lora_B[adapter_name].weight.detach().float()
        scale = float(module.scaling[adapter_name])
        updates.append(_lora_for_module(model, _strip_peft_prefix(name), A, B, scale))
    if not updates:
        raise AdapterError(f"no LoRA layers for adapter {adapter_name!r} in this PeftModel")
    return updates


# ---------------------------------------------------------------------------------------------
# EasyEdit artefacts
# ---------------------------------------------------------------------------------------------


def from_easyedit_pt(
    path: str | os.PathLike, model: nn.Module, *, layer: int | None = None, component: str | None = None,
    concept_id: int | None = None, steer_values: Sequence[float] | None = None, epsilon: float | None = None,
) -> Update:
    """An EasyEdit steering artefact as an update.

    Per-layer files (``layer_{L}.pt`` of caa, vector_prompt, sae_feature, reps, sft and spilt;
    ``layer_{L}_merged_vector.pt`` of merge_vector; ``layer_{L}_{mode}_trim{t}.pt`` of sta) are
    parsed by :mod:`easyedit_split.core.easyedit_layout` (the layer comes from the name unless given);
    lm_steer's ``lm_steer_vector.pt`` by :func:`easyedit_split.adapters.lm_steer.from_lm_steer`, which needs
    the apply-time ``steer_values`` (and optionally ``epsilon``). A ``.pt`` written by easyedit-split
    together with a ``.safetensors`` loads as that file's update, after checking the two belong together.
    """
    p = Path(path)
    from easyedit_split.core.serialization import companion_update

    companion = companion_update(p, model) if p.exists() else None
    if companion is not None:
        return companion
    if p.name == LM_STEER_FILE:
        if steer_values is None:
            raise AdapterError(f"{p} is an lm_steer checkpoint: pass steer_values= (EasyEdit's apply hparam "
                               "steer_values, one per steer; on the command line --steer-values, e.g. --steer-values 3,1)")
        return from_lm_steer(p, model, steer_values, epsilon=epsilon)
    return read_easyedit_pt(p, model, layer=layer, component=component, concept_id=concept_id)


# ---------------------------------------------------------------------------------------------
# knowledge edits
# ---------------------------------------------------------------------------------------------


def from_edited_weights(
    model: nn.Module,
    edited: nn.Module | Mapping[str, torch.Tensor] | str | os.PathLike,
    *,
    atol: float = 0.0,
) -> list[Update]:
    """``ΔW = W_edited − W_base`` and ``Δb = b_edited − b_base`` for every linear module of a decoder
    layer that changed.

    ``edited`` is an edited model, a state dict, or a Hugging Face checkpoint folder (its
    ``*.safetensors`` files are read; ``.bin`` pickles are refused). A bias the edit adds to a
    module that has none in the base model (a merged export folds ``Δb`` that way) counts as
    ``Δb = b_edited``. A module whose only change is its bias becomes a :class:`VectorUpdate` on
    that module; any other change a :class:`LocalWeightUpdate`. A change outside the decoder
    layers' linear modules (embeddings, norms) cannot be expressed and raises.
    """
    edited_sd = _edited_state_dict(edited)
    base_sd = model.state_dict()
    if edited_sd and not any(k in base_sd or k.endswith(".bias") for k in edited_sd):
        where = f"{edited}" if isinstance(edited, (str, os.PathLike)) else "the edited weights"
        example = ", ".join(repr(k) for k in list(edited_sd)[:3])
        raise AdapterError(f"{where}: none of its {len(edited_sd)} tensors ({example}…) is a parameter of this "
                           f"{type(model).__name__}, so it is neither edited weights of this model nor an "
                           "easyedit-split update file (its metadata has no 'format'); give an update file saved by "
                           "easyedit-split, an EasyEdit layer_N.pt, a peft adapter folder, or a checkpoint of this model")
    by_module: dict[str, dict[str, torch.Tensor]] = {}
    for key, new in edited_sd.items():
        mod_path, _, param = key.rpartition(".")
        if key in base_sd:
            old = base_sd[key]
        elif param == "bias" and _bias_free_linear(model, mod_path):
            old = torch.zeros_like(new)
        else:
            logger.debug("edit: %s has no counterpart in the base model; ignored", key)
            continue
        if old.shape != new.shape:
            raise AdapterError(f"edited weight {key} has shape {tuple(new.shape)}, base has {tuple(old.shape)}")
        diff = new.double().cpu() - old.double().cpu()  # exact for fp32 and lower precisions
        if diff.abs().max() <= atol:
            continue
        by_module.setdefault(mod_path, {})[param] = diff.float()
    if not by_module:
        raise AdapterError("the edited weights equal the base model's: nothing to express")
    updates: list[Update] = []
    for mod_path, diffs in sorted(by_module.items()):
        if set(diffs) - {"weight", "bias"}:
            raise AdapterError(f"edit changes {mod_path}.{sorted(diffs)} which is not a linear weight/bias")
        try:
            site = site_for_module_path(model, mod_path)
            rs = resolve_site(model, site)
        except SiteError as exc:
            raise AdapterError(f"edit changes {mod_path}: {exc}") from exc
        if rs.kind not in ("linear", "conv1d"):
            raise AdapterError(f"edit changes {mod_path}, which is not a linear module ({type(rs.module).__name__})")
        dW, db = diffs.get("weight"), diffs.get("bias")
        if dW is None:
            updates.append(VectorUpdate(site, rs.d_out, vector=db))
        else:
            if rs.kind == "conv1d":
                dW = dW.t()
            updates.append(LocalWeightUpdate(site, rs.d_in, rs.d_out, weight=dW, bias=db))
        logger.info("edit: %s changed (|ΔW|=%.4g, |Δb|=%.4g)", mod_path, 0.0 if dW is None else float(dW.norm()),
                    0.0 if db is None else float(db.norm()))
    return updates


def _bias_free_linear(model: nn.Module, mod_path: str) -> bool:
    try:
        module = model.get_submodule(mod_path)
    except AttributeError:
        return False
    return getattr(module, "bias", False) is None and hasattr(module, "weight")


def _edited_state_dict(edited) -> Mapping[str, torch.Tensor]:
    if isinstance(edited, nn.Module):
        return edited.state_dict()
    if isinstance(edited, Mapping):
        return edited
    folder = Path(edited)
    if not folder.exists():
        raise AdapterError(f"edited checkpoint {folder} does not exist")
    files = [folder] if folder.is_file() else sorted(folder.glob("*.safetensors"))
    if not files:
        raise AdapterError(f"no .safetensors files in {folder} (pickled .bin checkpoints are not read)")
    from safetensors.torch import load_file

    sd: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            sd.update(load_file(str(f)))
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types for corrupt files
            raise AdapterError(f"{f} is not a readable safetensors file ({exc})") from None
    return sd
