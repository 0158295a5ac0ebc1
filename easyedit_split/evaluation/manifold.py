"""The activation-manifold measure: does steering push hidden states off the unsteered manifold?

Measured so that it can test the hypothesis rather than restate the update:

* **downstream** — states are the residual-stream outputs of decoder layers *after* the highest
  updated layer (default: the last layer before the final norm, and one midway between). At the
  update's own site the steered state is exactly ``h + m·Δh``, so any distance grows with ``|m|``
  by construction; downstream, it grows only as far as the model carries the change;
* **deduplicated** — a causal model's state at a position depends only on the tokens up to it, so
  states are keyed by their token prefix and each distinct prefix counts once: the prompt
  positions shared by a pair's positive and negative rows count once, and positions inside the
  prefix common to every sequence (the chat template's opening, a shared question stem) are
  dropped, as is each sequence's first token (an attention sink);
* **held out** — the pairs are split (seeded) into a *fit* set, on whose unsteered states the PCA
  (scikit-learn) is fitted, and a *score* set, whose states are measured; a state whose prefix
  also occurs in the fit set is not scored;
* **sized** — the number of components is the smallest reaching ``variance`` of the fit states'
  variance, capped at ``n_fit_states // states_per_component``; a warning is logged (and
  recorded) when the fit states number fewer than ``2·D``.

For the principal subspace ``V`` with mean ``μ`` and a state ``h``, ``c = h − μ`` and
``r = c − VᵀV c``. Per layer and multiplier ``m``, over the scored states:

* ``distance(m)`` = ``(mean ‖r_m‖ − mean ‖r_0‖) / mean ‖c_0‖`` — off-subspace norm in excess of
  the unsteered held-out states', in units of their typical centred norm (0 at ``m = 0``);
* ``residual_rel(m)`` = mean of ``‖r‖ / ‖c‖``.

With a per-example UtilOdds table, :func:`correlate_with_utility` reports the Pearson and Spearman
correlation across ``m`` of ``distance(m)`` with the scored pairs' mean UtilOdds(m), with
percentile intervals from a seeded bootstrap over the scored pairs (distances and utilities
resampled together).
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

from easyedit_split.core.apply import apply_updates
from easyedit_split.core.forward import capture_prefix, final_hidden, run_suffix, site_start_layer
from easyedit_split.core.record import record_site_outputs, stop_after
from easyedit_split.core.sites import Site, decoder_layers
from easyedit_split.core.updates import Update
from easyedit_split.data.encoding import EncodedPair, collate_pairs, pad_id_of
from easyedit_split.data.pairs import PolarityPair
from easyedit_split.errors import InputError
from easyedit_split.evaluation.logodds import percentile_interval
from easyedit_split.evaluation.sweep import encode_for_sweep

logger = logging.getLogger(__name__)

__all__ = ["ManifoldResult", "correlate_with_utility", "dedup_positions", "default_layers", "manifold_distance",
           "split_fit_score"]

POSITIONS = ("answer", "prompt", "all")


@dataclass
class ManifoldResult:
    table: pd.DataFrame  # layer, m, distance, residual_rel, n_states
    layers: list[int]
    pca: dict[int, dict[str, Any]]  # layer -> n_components, explained_variance, n_fit_states, capped
    variance_target: float
    positions: str
    n_fit_pairs: int
    n_score_pairs: int
    warnings: list[str] = field(default_factory=list)
    correlation: dict[int, dict[str, Any]] = field(default_factory=dict)  # layer -> correlate_with_utility(...)
    per_pair: pd.DataFrame | None = None  # layer, m, example_id, r_sum, c0_sum, n (for resampling)

    def layer_table(self, layer: int | None = None) -> pd.DataFrame:
        """The rows of one layer (default: the last measured)."""
        layer = self.layers[-1] if layer is None else layer
        return self.table.loc[self.table["layer"] == layer].reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        return {"layers": self.layers, "pca": {str(k): v for k, v in self.pca.items()},
                "variance_target": self.variance_target, "positions": self.positions,
                "n_fit_pairs": self.n_fit_pairs, "n_score_pairs": self.n_score_pairs, "warnings": self.warnings,
                "correlation": {str(k): v for k, v in self.correlation.items()},
                "table": self.table.to_dict(orient="list")}


def default_layers(model: nn.Module, updates: Sequence[Update]) -> list[int]:
    """The last decoder layer, and the one midway between it and the highest updated layer."""
    _, layers = decoder_layers(model)
    last = len(layers) - 1
    top = max(u.site.layer for u in updates)
    if top >= last:
        raise InputError(f"an update sits in the last layer ({top}); no layer lies downstream of it")
    mid = (top + 1 + last) // 2
    return sorted({mid, last})


def split_fit_score(ids: Sequence[str], fit_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of indices ``0..n-1`` into disjoint (fit, score) sets, both non-empty."""
    n = len(ids)
    if n < 2:
        raise InputError(f"the manifold measure needs at least 2 pairs (fit and score sets), got {n}")
    if not 0 < fit_fraction < 1:
        raise InputError(f"fit_fraction must be in (0, 1), got {fit_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    k = min(max(1, round(fit_fraction * n)), n - 1)
    return sorted(perm[:k].tolist()), sorted(perm[k:].tolist())


def _common_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    if not seqs:
        return 0
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for t in range(n):
        if any(s[t] != first[t] for s in seqs):
            return t
    return n


def dedup_positions(rows: Sequence[Sequence[int]], selectable: Sequence[Sequence[bool]], *,
                    skip_prefix: int, exclude: set | None = None) -> tuple[list[tuple[int, int]], set]:
    """``[(row, position)]`` of the first occurrence of each distinct token prefix, and the prefix keys.

    ``selectable[row][t]``: whether position ``t`` may be used; positions ``t < skip_prefix`` never
    are; a prefix whose key is in ``exclude`` is skipped. Keys are prefix tuples.
    """
    seen: set = set()
    out: list[tuple[int, int]] = []
    exclude = exclude or set()
    for r, ids in enumerate(rows):
        for t in range(skip_prefix, len(ids)):
            if not selectable[r][t]:
                continue
            key = tuple(ids[: t + 1])
            if key in seen or key in exclude:
                continue
            seen.add(key)
            out.append((r, t))
    return out, seen


@dataclass
class _Batch:
    batch: Any
    cache: Any
    picks: list[tuple[int, int]]  # (row, position) in this batch
    pair_index: list[int]  # for each pick: the pair's index in the given pairs


def _prepare(model, encoded: list[EncodedPair], which: list[int], pad: int, positions: str, skip_prefix: int,
             batch_size: int, start: int, exclude: set | None) -> tuple[list[_Batch], set]:
    """Right-padded batches of the pairs ``which``, with the deduplicated positions to read."""
    dev = next(model.parameters()).device
    seen: set = set(exclude or ())
    out: list[_Batch] = []
    keys_all: set = set()
    for s in range(0, len(which), batch_size):
        idx = which[s:s + batch_size]
        batch = collate_pairs([encoded[i] for i in idx], pad, padding_side="right")
        am = batch.attention_mask.bool()
        sel = {"answer": batch.answer_mask & am, "prompt": am & ~batch.answer_mask, "all": am}[positions]
        lengths = am.sum(1).tolist()
        rows = [batch.input_ids[r, :lengths[r]].tolist() for r in range(batch.input_ids.shape[0])]
        picks, keys = dedup_positions(rows, sel.tolist(), skip_prefix=skip_prefix, exclude=seen)
        seen |= keys
        keys_all |= keys
        if not picks:
            continue
        batch = batch.to(dev)
        cache = capture_prefix(model, batch.input_ids, batch.attention_mask, start) if start > 0 else None
        B = len(idx)
        out.append(_Batch(batch, cache, picks, [idx[r % B] for r, _ in picks]))
    return out, keys_all


def _states(model: nn.Module, updates: Sequence[Update], sites: list[Site], b: _Batch, m: float) -> dict[int, np.ndarray]:
    with apply_updates(model, updates, m), record_site_outputs(model, sites) as rec, stop_after(model, sites[-1]):
        if b.cache is not None:
            run_suffix(model, b.cache)
        else:
            final_hidden(model, b.batch.input_ids, b.batch.attention_mask)
    rows = torch.tensor([r for r, _ in b.picks])
    pos = torch.tensor([t for _, t in b.picks])
    out = {}
    for s in sites:
        if not rec[s]:
            raise RuntimeError(f"the site {s} was not reached in the forward pass")
        out[s.layer] = rec[s][-1].float()[rows, pos].cpu().numpy().astype(np.float64)
    return out


def _collect(model, updates, sites, batches: list[_Batch], m: float) -> dict[int, np.ndarray]:
    parts = [_states(model, updates, sites, b, m) for b in batches]
    return {s.layer: np.concatenate([p[s.layer] for p in parts]) for s in sites}


@torch.no_grad()
def manifold_distance(
    model: nn.Module,
    tokenizer: Any,
    pairs: Sequence[PolarityPair | EncodedPair],
    updates: Sequence[Update],
    multipliers: Sequence[float],
    *,
    layers: Sequence[int] | None = None,
    variance: float = 0.9,
    positions: str = "all",
    fit_fraction: float = 0.5,
    states_per_component: int = 4,
    seed: int = 0,
    batch_size: int = 16,
    pad_token_id: int | None = None,
    util_table: pd.DataFrame | None = None,
    util_column: str = "util_odds",
    n_boot: int = 1000,
) -> ManifoldResult:
    """Distance of downstream steered states from the unsteered principal subspace, per layer and ``m``.

    See the module doc. ``util_table`` (a per-example sweep table: ``example_id``, ``m`` and
    ``util_column``), when given, fills ``correlation`` per layer.
    """
    from sklearn.decomposition import PCA

    if positions not in POSITIONS:
        raise InputError(f"positions must be one of {POSITIONS}, got {positions!r}")
    if not 0 < variance < 1:
        raise InputError(f"variance must be in (0, 1), got {variance}")
    if states_per_component < 1:
        raise InputError(f"states_per_component must be >= 1, got {states_per_component}")
    ups = list(updates)
    if not ups:
        raise InputError("manifold_distance needs at least one update")
    top = max(u.site.layer for u in ups)
    layer_list = sorted({int(x) for x in layers}) if layers is not None else default_layers(model, ups)
    n_layers = len(decoder_layers(model)[1])
    bad = [x for x in layer_list if not top < x < n_layers]
    if bad:
        raise InputError(f"manifold layers {bad} are not downstream of the updates (layer {top}) and inside the "
                         f"model's {n_layers} layers")
    sites = [Site(x, "residual") for x in layer_list]
    encoded = encode_for_sweep(tokenizer, pairs)
    pad = pad_id_of(tokenizer) if pad_token_id is None else int(pad_token_id)
    start = site_start_layer(model, [u.site for u in ups])
    grid = sorted({float(m) for m in multipliers} | {0.0})

    fit_idx, score_idx = split_fit_score([e.id for e in encoded], fit_fraction, seed)
    # the prefix shared by every sequence (chat template opening, common question stem) and the first token
    skip = max(1, _common_prefix_length([list(e.prompt_ids) for e in encoded]))
    fit_batches, fit_keys = _prepare(model, encoded, fit_idx, pad, positions, skip, batch_size, start, None)
    score_batches, _ = _prepare(model, encoded, score_idx, pad, positions, skip, batch_size, start, fit_keys)
    if not fit_batches or not score_batches:
        raise InputError("no distinct token states left to fit or score (too few pairs, or all share one prefix)")

    warnings: list[str] = []
    fit0 = _collect(model, ups, sites, fit_batches, 0.0)
    pcas: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    pca_info: dict[int, dict[str, Any]] = {}
    for layer in layer_list:
        h = fit0[layer]
        n_fit, dim = h.shape
        if n_fit < 2:
            raise InputError(f"layer {layer}: {n_fit} fit state(s); a PCA needs at least 2")
        full = PCA(svd_solver="full").fit(h)
        cum = np.cumsum(full.explained_variance_ratio_)
        k_var = int(np.searchsorted(cum, variance) + 1)
        k_cap = max(1, n_fit // states_per_component)
        k = min(k_var, k_cap, full.components_.shape[0])
        if n_fit < 2 * dim:
            msg = (f"layer {layer}: {n_fit} fit states for {dim} dimensions (fewer than 2·D); the subspace is "
                   f"estimated from few samples and capped at {k_cap} components")
            logger.warning("manifold: %s", msg)
            warnings.append(msg)
        pcas[layer] = (full.mean_, full.components_[:k])
        pca_info[layer] = {"n_components": int(k), "n_components_for_variance": k_var,
                           "explained_variance": float(cum[k - 1]), "n_fit_states": int(n_fit), "dim": int(dim),
                           "capped": bool(k < k_var)}

    score_pair = np.concatenate([np.asarray(b.pair_index) for b in score_batches])
    score_ids = [encoded[i].id for i in score_pair]

    def norms(layer: int, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu, V = pcas[layer]
        c = h - mu
        r = c - (c @ V.T) @ V
        return np.linalg.norm(r, axis=1), np.linalg.norm(c, axis=1)

    base = {layer: norms(layer, h) for layer, h in _collect(model, ups, sites, score_batches, 0.0).items()}
    rows, pair_rows = [], []
    for m in grid:
        states = None if m == 0.0 else _collect(model, ups, sites, score_batches, m)
        for layer in layer_list:
            r0, c0 = base[layer]
            r, c = base[layer] if states is None else norms(layer, states[layer])
            rows.append({"layer": layer, "m": m, "distance": float((r.mean() - r0.mean()) / c0.mean()),
                         "residual_rel": float((r / np.maximum(c, 1e-12)).mean()), "n_states": int(r.size)})
            df = pd.DataFrame({"example_id": score_ids, "r": r, "r0": r0, "c0": c0})
            g = df.groupby("example_id", sort=True).agg(r_sum=("r", "sum"), r0_sum=("r0", "sum"),
                                                         c0_sum=("c0", "sum"), n=("r", "size")).reset_index()
            g.insert(0, "m", m)
            g.insert(0, "layer", layer)
            pair_rows.append(g)
    result = ManifoldResult(pd.DataFrame(rows), layer_list, pca_info, float(variance), positions, len(fit_idx),
                            len(score_idx), warnings, per_pair=pd.concat(pair_rows, ignore_index=True))
    if util_table is not None:
        for layer in layer_list:
            result.correlation[layer] = correlate_with_utility(result, util_table, layer=layer, column=util_column,
                                                               n_boot=n_boot, seed=seed)
    for layer in layer_list:
        logger.info("manifold at layer %d: k=%d components (%.3f of the variance) from %d fit states; %d scored",
                    layer, pca_info[layer]["n_components"], pca_info[layer]["explained_variance"],
                    pca_info[layer]["n_fit_states"], int(result.layer_table(layer)["n_states"].iloc[0]))
    return result


def _corr(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from scipy.stats import rankdata

    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan, np.nan
    pearson = float(np.corrcoef(x, y)[0, 1])
    spearman = float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])
    return pearson, spearman


def correlate_with_utility(result: ManifoldResult, util_table: pd.DataFrame, *, layer: int | None = None,
                           column: str = "util_odds", n_boot: int = 1000, level: float = 0.95,
                           seed: int = 0) -> dict[str, Any]:
    """Correlation across ``m`` of ``distance(m)`` with mean UtilOdds(m) on the scored pairs, with a CI.

    The bootstrap resamples the scored pairs (with replacement); each resample recomputes both
    curves from the same pairs. Infinite UtilOdds are left out of the means.
    """
    if result.per_pair is None:
        raise InputError("the manifold result carries no per-pair data")
    layer = result.layers[-1] if layer is None else layer
    pp = result.per_pair.loc[result.per_pair["layer"] == layer]
    ms = sorted(pp["m"].unique())
    ids = sorted(pp["example_id"].unique())
    missing = [c for c in ("example_id", "m", column) if c not in util_table.columns]
    if missing:
        raise InputError(f"utility table lacks columns {missing}")
    ut = util_table.loc[util_table["example_id"].isin(ids)]
    ut = ut.pivot_table(index="example_id", columns="m", values=column, aggfunc="first")
    common = [m for m in ms if any(abs(m - c) < 1e-9 for c in ut.columns)]
    if len(common) < 3:
        return {"n_m": len(common), "pearson": None, "spearman": None}
    ut = ut.reindex(index=ids)[[next(c for c in ut.columns if abs(c - m) < 1e-9) for m in common]].to_numpy(float)
    if np.isnan(ut).any():
        raise InputError("the utility table lacks some scored (example, m) rows")

    def mats(col: str) -> np.ndarray:
        return pp.pivot(index="example_id", columns="m", values=col).reindex(index=ids)[common].to_numpy(float)

    r, r0, c0, n = mats("r_sum"), mats("r0_sum"), mats("c0_sum"), mats("n")

    def curves(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tot = n[rows, 0].sum()
        dist = (r[rows].sum(0) - r0[rows].sum(0)) / c0[rows, 0].sum() if tot else np.full(len(common), np.nan)
        u = ut[rows]
        ok = np.isfinite(u)
        util = np.where(ok, u, 0).sum(0) / np.maximum(ok.sum(0), 1)
        return dist, util

    d, u = curves(np.arange(len(ids)))
    pearson, spearman = _corr(d, u)
    rng = np.random.default_rng(seed)
    bp, bs = [], []
    for _ in range(max(int(n_boot), 0)):
        p, s = _corr(*curves(rng.integers(0, len(ids), len(ids))))
        bp.append(p)
        bs.append(s)
    def nz(x: float) -> float | None:
        return None if np.isnan(x) else x

    return {"n_m": len(common), "n_pairs": len(ids), "pearson": nz(pearson),
            "pearson_ci": list(percentile_interval(bp, level)), "spearman": nz(spearman),
            "spearman_ci": list(percentile_interval(bs, level)), "level": level, "n_boot": int(n_boot), "seed": seed}
