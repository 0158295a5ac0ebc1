"""Steering vectors built from a sparse autoencoder's decoder rows: EasyEdit's sae_feature and sta.

The SAE is a local folder in SAELens's layout — ``cfg.json`` and ``sae_weights.safetensors`` with
``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]`` (and
``threshold [d_sae]`` for JumpReLU) — read with safetensors and JSON only (no SAELens, no download).

* **sae_feature**: ``v = Σ_i strength_i · W_dec[feature_i]`` (EasyEdit's ``position_ids`` and
  ``strengths``), added at the layer output: a :class:`~easyedit_split.core.updates.VectorUpdate` of
  the residual site, exact.
* **sta** (Steering Target Atoms): from per-feature scores of the SAE on the training data —
  ``feature_act`` (mean positive-minus-negative activation), ``pos_freq``/``neg_freq`` (how often
  each feature fires) — keep the features whose activation and frequency both rank in the top
  ``1 − trim`` with agreeing signs (``mode``: ``act_and_freq`` | ``only_act`` | ``only_freq``),
  decode them (``acts @ W_dec``) and rescale to the norm of the CAA vector. EasyEdit's generator
  saves those scores in ``feature_score/``; :func:`sta_update_from_scores` rebuilds the vector
  from them for any trim, and its saved ``layer_{L}_{mode}_trim{t}.pt`` reads with
  :func:`~easyedit_split.adapters.builders.from_easyedit_pt` like any vector.

:class:`SaeWeights` also encodes (``standard`` ReLU, ``jumprelu`` and ``topk`` architectures), which
is what sta's scores need.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from easyedit_split.core.easyedit_layout import AdapterError, load_pt
from easyedit_split.core.sites import Site, resolve_site
from easyedit_split.core.updates import VectorUpdate

__all__ = [
    "STA_MODES",
    "SaeWeights",
    "load_sae",
    "sae_feature_update",
    "sae_feature_vector",
    "sta_direction",
    "sta_update_from_scores",
]

SAE_CONFIG = "cfg.json"
SAE_WEIGHTS = "sae_weights.safetensors"
STA_MODES = ("act_and_freq", "only_act", "only_freq")
_ARCHITECTURES = ("standard", "jumprelu", "topk")


@dataclass
class SaeWeights:
    """An SAE read from SAELens's on-disk layout."""

    W_enc: torch.Tensor  # [d_in, d_sae]
    b_enc: torch.Tensor  # [d_sae]
    W_dec: torch.Tensor  # [d_sae, d_in]
    b_dec: torch.Tensor  # [d_in]
    architecture: str = "standard"
    apply_b_dec_to_input: bool = True
    threshold: torch.Tensor | None = None
    k: int | None = None
    cfg: dict[str, Any] = field(default_factory=dict)
    source: str = "SAE"

    @property
    def device(self) -> torch.device:
        return self.W_dec.device

    @property
    def d_sae(self) -> int:
        return int(self.W_dec.shape[0])

    def hook_layer(self) -> int | None:
        """The layer the SAE was trained on, where its config says (``hook_layer`` or ``blocks.L.`` in ``hook_name``)."""
        meta = self.cfg.get("metadata") if isinstance(self.cfg.get("metadata"), dict) else {}
        for cfg in (self.cfg, meta):
            if isinstance(cfg.get("hook_layer"), int):
                return cfg["hook_layer"]
            m = re.search(r"(?:blocks|layers)\.(\d+)\.", str(cfg.get("hook_name", "")))
            if m:
                return int(m.group(1))
        return None

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations ``[..., d_sae]`` of residual activations ``x [..., d_in]``."""
        x = x.to(self.W_enc.dtype).to(self.W_enc.device)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        pre = x @ self.W_enc + self.b_enc
        if self.architecture == "jumprelu":
            return pre * (pre > self.threshold)
        acts = torch.relu(pre)
        if self.architecture == "topk":
            top = acts.topk(self.k, dim=-1)
            acts = torch.zeros_like(acts).scatter_(-1, top.indices, top.values)
        return acts


def load_sae(path: str | os.PathLike) -> SaeWeights:
    """An SAE folder in SAELens's layout (``cfg.json`` + ``sae_weights.safetensors``)."""
    folder = Path(path)
    cfg_path, weights_path = folder / SAE_CONFIG, folder / SAE_WEIGHTS
    for p in (cfg_path, weights_path):
        if not p.is_file():
            raise AdapterError(f"{p} not found: an SAE folder in SAELens's layout holds {SAE_CONFIG} and {SAE_WEIGHTS}")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise AdapterError(f"{cfg_path}: not valid JSON ({exc})") from exc
    from safetensors.torch import load_file

    sd = load_file(str(weights_path))
    missing = [k for k in ("W_enc", "b_enc", "W_dec", "b_dec") if k not in sd]
    if missing:
        raise AdapterError(f"{weights_path}: missing {missing} (has {sorted(sd)})")
    arch = str(cfg.get("architecture") or (cfg.get("metadata") or {}).get("architecture") or "standard").lower()
    if arch not in _ARCHITECTURES:
        raise AdapterError(f"{cfg_path}: architecture {arch!r} is not supported; use one of {_ARCHITECTURES}")
    if str(cfg.get("normalize_activations") or "none") != "none":
        raise AdapterError(f"{cfg_path}: normalize_activations={cfg['normalize_activations']!r} is not supported")
    W_enc, W_dec = sd["W_enc"].float(), sd["W_dec"].float()
    d_in, d_sae = W_enc.shape
    if tuple(W_dec.shape) != (d_sae, d_in) or sd["b_enc"].numel() != d_sae or sd["b_dec"].numel() != d_in:
        raise AdapterError(f"{weights_path}: shapes W_enc {tuple(W_enc.shape)}, W_dec {tuple(W_dec.shape)}, "
                           f"b_enc {tuple(sd['b_enc'].shape)}, b_dec {tuple(sd['b_dec'].shape)} do not fit together")
    for key in ("d_in", "d_sae"):
        if key in cfg and int(cfg[key]) != {"d_in": d_in, "d_sae": d_sae}[key]:
            raise AdapterError(f"{cfg_path}: {key}={cfg[key]} but the weights say {({'d_in': d_in, 'd_sae': d_sae})[key]}")
    threshold = sd.get("threshold")
    if arch == "jumprelu" and threshold is None:
        raise AdapterError(f"{weights_path}: a jumprelu SAE needs a 'threshold' tensor")
    k = cfg.get("k")
    if arch == "topk" and not isinstance(k, int):
        raise AdapterError(f"{cfg_path}: a topk SAE needs an integer 'k'")
    return SaeWeights(W_enc, sd["b_enc"].float(), W_dec, sd["b_dec"].float(), architecture=arch,
                      apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
                      threshold=None if threshold is None else threshold.float(), k=k, cfg=cfg, source=str(folder))


def _sae(sae: SaeWeights | str | os.PathLike) -> SaeWeights:
    return sae if isinstance(sae, SaeWeights) else load_sae(sae)


def sae_feature_vector(sae: SaeWeights | str | os.PathLike, position_ids: Sequence[int],
                       strengths: Sequence[float]) -> torch.Tensor:
    """EasyEdit's sae_feature vector: ``Σ_i strengths[i] · W_dec[position_ids[i]]``."""
    s = _sae(sae)
    if not position_ids:
        raise AdapterError(f"{s.source}: position_ids is empty; name the SAE features to steer with")
    if len(position_ids) != len(strengths):
        raise AdapterError(f"{s.source}: {len(position_ids)} position_ids but {len(strengths)} strengths")
    bad = [i for i in position_ids if not 0 <= int(i) < s.d_sae]
    if bad:
        raise AdapterError(f"{s.source}: feature ids {bad} out of range 0..{s.d_sae - 1}")
    vec = torch.zeros_like(s.W_dec[0])
    for fid, strength in zip(position_ids, strengths):
        vec = vec + float(strength) * s.W_dec[int(fid)]
    return vec


def _residual_vector(model: nn.Module, layer: int, vec: torch.Tensor, sae: SaeWeights) -> VectorUpdate:
    trained = sae.hook_layer()
    if trained is not None and trained != layer:
        raise AdapterError(f"{sae.source}: the SAE was trained on layer {trained}, not layer {layer}")
    site = Site(layer, "residual")
    rs = resolve_site(model, site)
    if vec.numel() != rs.d_out:
        raise AdapterError(f"{sae.source}: the SAE's d_in is {vec.numel()} but the model's hidden size is {rs.d_out}")
    return VectorUpdate(site, rs.d_out, vector=vec.float())


def sae_feature_update(sae: SaeWeights | str | os.PathLike, model: nn.Module, layer: int,
                       position_ids: Sequence[int], strengths: Sequence[float]) -> VectorUpdate:
    """The sae_feature vector as a residual update at ``layer`` (checked against the SAE's hook layer)."""
    s = _sae(sae)
    return _residual_vector(model, layer, sae_feature_vector(s, position_ids, strengths), s)


def _signed_min_max(t: torch.Tensor) -> torch.Tensor:
    a = t.abs()
    return t.sign() * (a - a.min()) / (a.max() - a.min() + 1e-8)


def _top_mask(values: torch.Tensor, keep: float) -> torch.Tensor:
    """``|values|`` at least the value at rank ``keep·n`` (sorted descending, clamped to the last)."""
    idx = min(int(keep * len(values)), len(values) - 1)
    threshold = torch.sort(values.abs(), descending=True, stable=True).values[idx]
    return values.abs() >= threshold


def sta_direction(sae: SaeWeights | str | os.PathLike, feature_act: torch.Tensor, pos_freq: torch.Tensor,
                  neg_freq: torch.Tensor, trim: float, mode: str = "act_and_freq") -> torch.Tensor:
    """The decoded target atoms (before rescaling): the features kept by ``mode`` at ``trim``, decoded."""
    if mode not in STA_MODES:
        raise AdapterError(f"sta mode {mode!r} is not one of {STA_MODES}")
    s = _sae(sae)
    act = feature_act.float().to(s.device)
    diff = (pos_freq - neg_freq).float().to(s.device)
    norm_act, norm_diff = _signed_min_max(act), _signed_min_max(diff)
    agree = ((norm_act > 0) & (norm_diff > 0)) | ((norm_act < 0) & (norm_diff < 0))
    scores = torch.where(agree, norm_diff, torch.zeros_like(norm_diff))
    keep = 1.0 - float(trim)
    freq_mask, act_mask = _top_mask(scores, keep), _top_mask(act, keep)
    mask = {"act_and_freq": freq_mask & act_mask, "only_act": act_mask, "only_freq": freq_mask}[mode]
    return torch.where(mask, act, torch.zeros_like(act)) @ s.W_dec


def sta_update_from_scores(score_dir: str | os.PathLike, sae: SaeWeights | str | os.PathLike, model: nn.Module,
                           layer: int, trim: float, mode: str = "act_and_freq", *,
                           multiple_choice: bool = False) -> VectorUpdate:
    """An STA vector rebuilt from the scores EasyEdit's sta generator saved under ``score_dir``
    (``feature_score/layer_{L}_{feature_act,pos_freq,neg_freq}.pt`` and the CAA vector
    ``caa_vector[_multiple_choice]/layer_{L}.pt``), rescaled to the CAA vector's norm as upstream does."""
    root = Path(score_dir)
    scores = {k: load_pt(root / "feature_score" / f"layer_{layer}_{k}.pt") for k in ("feature_act", "pos_freq", "neg_freq")}
    caa = load_pt(root / ("caa_vector_multiple_choice" if multiple_choice else "caa_vector") / f"layer_{layer}.pt")
    s = _sae(sae)
    direction = sta_direction(s, scores["feature_act"], scores["pos_freq"], scores["neg_freq"], trim, mode)
    norm = direction.norm()
    scale = caa.float().norm() / norm if norm > 1e-8 else torch.zeros(())
    return _residual_vector(model, layer, scale * direction, s)
