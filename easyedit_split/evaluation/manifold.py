"""The activation-manifold measure: how far steering pushes hidden states off the unsteered manifold.

At the steered site, a PCA (scikit-learn) is fitted on the *unsteered* site outputs of the
evaluation prompts' tokens, keeping the ``k`` leading components that explain ``variance`` (e.g.
0.9) of their variance: the principal subspace ``V`` with mean ``μ``. For a state ``h`` let
``c = h − μ`` and ``r = c − VᵀV c`` (the part outside the subspace). Per multiplier ``m`` over the
selected tokens (answer, prompt or all):

* ``residual_rel(m)`` = mean over tokens of ``‖r‖ / ‖c‖`` (relative residual norm per token);
* ``distance(m)`` = ``(mean ‖r_m‖ − mean ‖r_0‖) / mean ‖c_0‖``: the off-manifold norm in excess
  of the unsteered states', in units of their typical centred norm — 0 at ``m = 0`` and growing
  as steering leaves the subspace.

States are recorded with :func:`~easyedit_split.record.record_site_outputs` registered inside the
:func:`~easyedit_split.apply.apply_updates` context, so the recorded output includes the update.
Layers below the lowest updated layer run once per batch (frozen prefix); the forward stops right
after the site.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..apply import apply_updates
from ..data.encoding import EncodedPair, collate_pairs, pad_id_of
from ..data.pairs import PolarityPair
from ..forward import capture_prefix, final_hidden, run_suffix, site_start_layer
from ..record import record_site_outputs, stop_after
from ..sites import Site
from ..updates import Update
from .sweep import encode_for_sweep

logger = logging.getLogger(__name__)

__all__ = ["ManifoldResult", "correlate_with_utility", "manifold_distance"]

POSITIONS = ("answer", "prompt", "all")


@dataclass
class ManifoldResult:
    table: pd.DataFrame  # m, distance, residual_rel, n_tokens
    site: Site
    n_components: int
    explained_variance: float
    variance_target: float
    positions: str
    skip_first: bool = True
    correlation: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"site": self.site.to_dict(), "n_components": self.n_components,
                "explained_variance": self.explained_variance, "variance_target": self.variance_target,
                "positions": self.positions, "skip_first": self.skip_first, "correlation": self.correlation,
                "table": self.table.to_dict(orient="list")}


def _site_states(model: nn.Module, updates: Sequence[Update], site: Site, batch, cache, m: float) -> torch.Tensor:
    with apply_updates(model, updates, m), record_site_outputs(model, [site]) as rec, stop_after(model, site):
        if cache is not None:
            run_suffix(model, cache)
        else:
            final_hidden(model, batch.input_ids, batch.attention_mask)
    if not rec[site]:
        raise RuntimeError(f"the site {site} was not reached in the forward pass")
    return rec[site][-1].float()


@torch.no_grad()
def manifold_distance(
    model: nn.Module,
    tokenizer: Any,
    pairs: Sequence[PolarityPair | EncodedPair],
    updates: Sequence[Update],
    multipliers: Sequence[float],
    *,
    site: Site | None = None,
    variance: float = 0.9,
    positions: str = "answer",
    batch_size: int = 16,
    pad_token_id: int | None = None,
    util_by_m: pd.Series | None = None,
    skip_first: bool = True,
) -> ManifoldResult:
    """Distance of steered site outputs from the principal subspace of unsteered ones, per ``m``.

    ``site`` defaults to the highest-layer update's site. ``skip_first`` leaves out each sequence's
    first token: in most LLMs it is an attention sink whose activations are orders of magnitude
    larger than the others' and would make the PCA one-dimensional. ``util_by_m`` (mean UtilOdds indexed
    by ``m``), when given, fills ``correlation`` (see :func:`correlate_with_utility`).
    """
    from sklearn.decomposition import PCA

    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
    if not 0 < variance < 1:
        raise ValueError(f"variance must be in (0, 1), got {variance}")
    ups = list(updates)
    if not ups:
        raise ValueError("manifold_distance needs at least one update")
    site = site or max((u.site for u in ups), key=lambda s: s.layer)
    encoded = encode_for_sweep(tokenizer, pairs)
    pad = pad_id_of(tokenizer) if pad_token_id is None else int(pad_token_id)
    start = site_start_layer(model, [u.site for u in ups])
    grid = sorted({float(m) for m in multipliers} | {0.0})

    batches = []
    for s in range(0, len(encoded), batch_size):
        batch = collate_pairs(encoded[s:s + batch_size], pad, padding_side="right")
        batch = batch.to(next(model.parameters()).device)
        am = batch.attention_mask.bool()
        sel = {"answer": batch.answer_mask & am, "prompt": am & ~batch.answer_mask, "all": am}[positions].clone()
        if skip_first:
            sel[:, 0] = False  # right padding: column 0 is every sequence's first token
        cache = capture_prefix(model, batch.input_ids, batch.attention_mask, start) if start > 0 else None
        batches.append((batch, sel, cache))

    def states(m: float) -> np.ndarray:
        return torch.cat([_site_states(model, ups, site, b, c, m)[sel] for b, sel, c in batches]).cpu().numpy()

    h0 = states(0.0).astype(np.float64)
    if h0.shape[0] < 2:
        raise ValueError("too few selected tokens to fit a PCA")
    pca = PCA(n_components=variance, svd_solver="full").fit(h0)
    mu, V = pca.mean_, pca.components_  # [D], [k, D]

    def norms(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = h.astype(np.float64) - mu
        r = c - (c @ V.T) @ V
        return np.linalg.norm(r, axis=1), np.linalg.norm(c, axis=1)

    r0, c0 = norms(h0)
    scale = float(c0.mean()) or 1.0
    rows = []
    for m in grid:
        r, c = (r0, c0) if m == 0.0 else norms(states(m))
        rel = r / np.maximum(c, 1e-12)
        rows.append({"m": m, "distance": float((r.mean() - r0.mean()) / scale), "residual_rel": float(rel.mean()),
                     "n_tokens": int(r.size)})
    table = pd.DataFrame(rows)
    result = ManifoldResult(table, site, int(pca.n_components_), float(pca.explained_variance_ratio_.sum()),
                            float(variance), positions, skip_first)
    if util_by_m is not None:
        result.correlation = correlate_with_utility(table, util_by_m)
    logger.info("manifold at %s: k=%d components explain %.3f of the variance", site, result.n_components,
                result.explained_variance)
    return result


def correlate_with_utility(table: pd.DataFrame, util_by_m: pd.Series) -> dict[str, Any]:
    """Pearson and Spearman correlation of ``distance(m)`` with mean ``UtilOdds(m)`` over shared ``m``."""
    from scipy.stats import pearsonr, spearmanr

    u = pd.Series(util_by_m, dtype=float)
    d = table.set_index("m")["distance"]
    common = [m for m in d.index if m in u.index and np.isfinite(u[m])]
    if len(common) < 3:
        return {"n": len(common), "pearson": None, "spearman": None}
    x, y = d.loc[common].to_numpy(), u.loc[common].to_numpy()
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"n": len(common), "pearson": None, "spearman": None}
    pr = pearsonr(x, y)
    sr = spearmanr(x, y)
    return {"n": len(common), "pearson": float(pr.statistic), "pearson_p": float(pr.pvalue),
            "spearman": float(sr.statistic), "spearman_p": float(sr.pvalue)}
