"""Multiplier sweeps: per-example answer losses and log-odds over a grid of multipliers.

:func:`sweep` drives :class:`easyedit_split.core.scoring.PairScorer`: pairs are sorted by length and
cut into chunks; each chunk is prepared once (padding, and the frozen prefix — the hidden states
entering the lowest steered layer, which do not depend on ``m``), then all its ``(pair, m)`` rows
are scored in batched passes with per-row multipliers (``batch_rows`` rows per pass). Single-token
pairs use one prompt row for both answers.

The result is a tidy table, one row per ``(example, m)`` (and per layer in a layer sweep):
``example_id, m, L_p, L_n, L_p_mean, L_n_mean, pref_odds, util_odds, pref_odds_mean,
util_odds_mean`` (+ ``layer``, ``method``). :func:`write_table` saves it atomically as CSV or
Parquet by suffix.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from easyedit_split.base.atomic_io import JsonlAppender, atomic_path
from easyedit_split.base.progress import progress as progress_bar
from easyedit_split.core.distributed import DistContext, current
from easyedit_split.core.scoring import PairScorer
from easyedit_split.core.serialization import check_updates_finite
from easyedit_split.core.sites import Site
from easyedit_split.core.updates import Update, VectorUpdate
from easyedit_split.data.encoding import EncodedPair, check_context_length, encode_pairs, pad_id_of
from easyedit_split.data.pairs import PolarityPair, check_pairs
from easyedit_split.errors import InputError, InputTypeError, NonFiniteResultError
from easyedit_split.evaluation.logodds import add_log_odds

logger = logging.getLogger(__name__)

__all__ = ["encode_for_sweep", "read_table", "replace_at_layer", "sweep", "sweep_many", "write_table"]

UpdateFactory = Callable[[int], Sequence[Update]]


def encode_for_sweep(
    tokenizer: Any, pairs: Sequence[PolarityPair | EncodedPair], **encode_kwargs: Any
) -> list[EncodedPair]:
    """Pass encoded pairs through; tokenise :class:`PolarityPair` objects."""
    items = check_pairs(pairs, "pairs to sweep", encoded_ok=True)
    if all(isinstance(p, EncodedPair) for p in items):
        return items  # type: ignore[return-value]
    if all(isinstance(p, PolarityPair) for p in items):
        if tokenizer is None:
            raise InputError("a tokenizer is needed to encode PolarityPair objects")
        return encode_pairs(items, tokenizer, **encode_kwargs)  # type: ignore[arg-type]
    kinds = sorted({type(p).__name__ for p in items})
    raise InputTypeError(f"pairs must all be PolarityPair or all EncodedPair, got {kinds}")


def replace_at_layer(updates: Sequence[Update], layer: int) -> list[Update]:
    """The same steering vectors (clamped ones stay clamped) placed at ``layer`` (only vectors: their meaning
    survives the move).

    LoRA / local-weight updates are tied to the weights of the layer they were made for; a layer
    sweep of those needs an ``update_factory(layer)``.
    """
    out: list[Update] = []
    for u in updates:
        if not isinstance(u, VectorUpdate):
            raise InputError(  # a wrong form, not a wrong Python type
                f"cannot move a {u.form} update from {u.site} to layer {layer}: only steering vectors are re-placed "
                "automatically; pass update_factory=lambda layer: [...] to sweep layers with other forms"
            )
        out.append(u.moved_to(Site(layer, u.site.component, u.site.module_path)))
    return out


def _as_grid(multipliers: Iterable[float] | np.ndarray | torch.Tensor) -> np.ndarray:
    grid = np.asarray(list(multipliers) if not isinstance(multipliers, (np.ndarray, torch.Tensor)) else multipliers,
                      dtype=np.float64).reshape(-1)
    if grid.size == 0:
        raise InputError("empty multiplier grid")
    if not np.isfinite(grid).all():
        raise InputError(f"multiplier grid has non-finite values: {grid.tolist()}")
    return grid


def _chunks(encoded: Sequence[EncodedPair], size: int) -> list[list[int]]:
    """Pair indices cut into chunks of ``size``, sorted by length so chunks pad little; single-token and
    multi-token pairs go to separate chunks."""
    order = sorted(range(len(encoded)), key=lambda i: (not encoded[i].single_token, len(encoded[i].prompt_ids)
                                                       + max(len(encoded[i].positive_ids), len(encoded[i].negative_ids))))
    chunks: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        if cur and (len(cur) >= size or encoded[cur[-1]].single_token != encoded[i].single_token):
            chunks.append(cur)
            cur = []
        cur.append(i)
    if cur:
        chunks.append(cur)
    return chunks


_KEYS = ("L_p", "L_n", "L_p_mean", "L_n_mean")


@torch.no_grad()
def _sweep_updates(
    model: nn.Module,
    encoded: list[EncodedPair],
    groups: Sequence[Sequence[Update]],
    grid: np.ndarray,
    *,
    pad_token_id: int,
    batch_rows: int,
    use_prefix_cache: bool,
    single_token_sharing: bool,
    bar: Any,
    partial: Any = None,
    run_key: str = "",
    dist: DistContext | None = None,
) -> pd.DataFrame:
    """Rows ``(group k, pair, m)``; with one group the plain hook path, with several the mixed one.

    The work is cut into units — one ``scorer.score`` call each: a chunk of pairs and a slice of
    ``batch_rows`` of its rows, formed exactly as in one process — and under torchrun every rank
    runs a contiguous block of units, then the rows are gathered and put in the fixed order. Every
    forward is the one-process run's forward, so the values are identical bit for bit.
    """
    dist = dist or DistContext()
    K = len(groups)
    if K == 1:
        scorer = PairScorer(model, list(groups[0]), pad_token_id=pad_token_id, use_prefix_cache=use_prefix_cache,
                            single_token_sharing=single_token_sharing)
    else:
        scorer = PairScorer(model, groups=[list(g) for g in groups], pad_token_id=pad_token_id,
                            use_prefix_cache=use_prefix_cache, single_token_sharing=single_token_sharing)
    M = grid.size
    chunks = _chunks(encoded, max(1, batch_rows // (M * K)))
    m_t = torch.as_tensor(grid, dtype=torch.float32)
    out: dict[str, list] = {k: [] for k in ("example_id", "_k", "_g", *_KEYS)}
    done: dict[tuple[str, int], dict[str, Any]] = {}
    if partial is not None and dist.enabled:
        logger.info("sweep under torchrun: the partial file %s is not used (a rerun starts this sweep over)",
                    partial.path)
        partial = None
    if partial is not None and K > 1:
        raise InputError("a partial file resumes sweeps of one update group only")
    if partial is not None:  # rows a killed or failed run already computed (same data, updates and grid)
        done = {(r["example_id"], int(r["g"])): r for r in partial.read() if r.get("run") == run_key}
    units: list[tuple[int, int]] = []  # (chunk, first row)
    for c, ch in enumerate(chunks):
        ids = [encoded[i].id for i in ch]
        if done and all((e, g) in done for e in ids for g in range(M)):
            for g in range(M):
                for e in ids:
                    row = done[(e, g)]
                    out["example_id"].append(e)
                    out["_k"].append(np.array([0]))
                    out["_g"].append(np.array([g]))
                    for key in _KEYS:
                        out[key].append(np.array([np.nan if row[key] is None else row[key]], dtype=np.float64))
            if bar is not None:
                bar.update(len(ids) * M)
            continue
        units.extend((c, s) for s in range(0, len(ch) * M * K, batch_rows))
    error: str | None = None
    prepared_chunk: tuple[int, Any] | None = None
    chunk_rows: list[dict[str, Any]] = []
    try:
        for c, s in dist.shard(units):
            ch = chunks[c]
            if prepared_chunk is None or prepared_chunk[0] != c:
                if partial is not None and chunk_rows:
                    partial.append(chunk_rows)
                chunk_rows = []
                prepared_chunk = (c, scorer.prepare([encoded[i] for i in ch]))
            prepared = prepared_chunk[1]
            P = len(ch)
            # rows of a chunk: groups, then multipliers, then pairs
            idx = torch.arange(P).repeat(M * K)[s:s + batch_rows]
            gi = torch.arange(M).repeat_interleave(P).repeat(K)[s:s + batch_rows]
            ki = torch.arange(K).repeat_interleave(P * M)[s:s + batch_rows]
            res = scorer.score(prepared, m_t[gi], idx, selection=ki if K > 1 else None)
            values = {key: t.detach().double().cpu().numpy()
                      for key, t in zip(_KEYS, (res.sum_p, res.sum_n, res.mean_p, res.mean_n))}
            bad = ~np.isfinite(values["L_p"]) | ~np.isfinite(values["L_n"])
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                if partial is not None and chunk_rows:
                    partial.append(chunk_rows)
                    chunk_rows = []
                kept = f"; the {len(done) + len(out['example_id'])} rows done so far are kept in {partial.path}" \
                    if partial is not None else ""
                which = f" of update group {int(ki[j])}" if K > 1 else ""
                raise NonFiniteResultError(
                    f"sweep: non-finite answer loss for pair {prepared.ids[int(idx[j])]}{which} at m={grid[int(gi[j])]:g}"
                    f"{kept}. The update or the multiplier is too large for the model: narrow the multiplier grid")
            out["example_id"].extend(prepared.ids[j] for j in idx.tolist())
            out["_k"].append(ki.numpy())
            out["_g"].append(gi.numpy())
            for key in _KEYS:
                out[key].append(values[key])
            if partial is not None:
                chunk_rows.extend({"run": run_key, "example_id": prepared.ids[j], "g": int(g),
                                   **{key: float(values[key][r]) for key in _KEYS}}
                                  for r, (j, g) in enumerate(zip(idx.tolist(), gi.tolist())))
            if bar is not None:
                bar.update(idx.numel())
        if partial is not None and chunk_rows:
            partial.append(chunk_rows)
    except NonFiniteResultError as exc:
        if not dist.enabled:
            raise
        error = str(exc)  # every rank must reach the gather, or the others would wait for ever
    local = {k: (np.concatenate(v) if v and k != "example_id" else v) for k, v in out.items()}
    if dist.enabled:
        parts = dist.gather((local, error))
        errors = [e for _, e in parts if e is not None]
        if errors:
            raise NonFiniteResultError(errors[0])
        local = {k: ([x for part, _ in parts for x in part[k]] if k == "example_id"
                     else np.concatenate([part[k] for part, _ in parts if len(part[k])] or [np.zeros(0)]))
                 for k in out}
    df = pd.DataFrame({k: (local[k] if len(local[k]) else np.zeros(0, dtype=np.float64 if k in _KEYS else np.int64))
                       for k in out})
    # rows in group order, then grid order, then in the order the pairs were given
    rank = {e.id: r for r, e in enumerate(encoded)}
    df["_r"] = df["example_id"].map(rank)
    df = df.sort_values(["_k", "_g", "_r"], kind="stable").reset_index(drop=True)
    df.insert(1, "m", grid[df["_g"].to_numpy().astype(np.int64)])
    if K == 1:
        df = df.drop(columns=["_k"])
    return df.drop(columns=["_g", "_r"])


def _sweep_inputs(model: nn.Module, tokenizer: Any, pairs_or_encoded: Any, multipliers: Any,
                  encode_kwargs: Mapping[str, Any] | None, pad_token_id: int | None):
    """The sorted grid (no duplicates), the encoded pairs (unique ids, within the context) and the pad id."""
    grid = np.sort(_as_grid(multipliers))
    if len(np.unique(grid.astype(np.float32))) != grid.size:
        raise InputError(f"multiplier grid has duplicate values: {grid.tolist()}")
    encoded = encode_for_sweep(tokenizer, pairs_or_encoded, **(encode_kwargs or {}))
    check_context_length(encoded, model)
    ids = [e.id for e in encoded]
    if len(set(ids)) != len(ids):
        raise InputError("pair ids are not unique; the sweep table is keyed by example_id")
    pad = pad_id_of(tokenizer) if pad_token_id is None else int(pad_token_id)
    return grid, encoded, pad


def sweep(
    model: nn.Module,
    tokenizer: Any,
    pairs_or_encoded: Sequence[PolarityPair | EncodedPair],
    updates: Sequence[Update] | Update,
    multipliers: Iterable[float],
    *,
    batch_rows: int = 128,
    layers: Sequence[int] | None = None,
    update_factory: UpdateFactory | None = None,
    method: str | None = None,
    use_prefix_cache: bool = True,
    single_token_sharing: bool = True,
    pad_token_id: int | None = None,
    progress: bool = True,
    output: str | os.PathLike | None = None,
    encode_kwargs: dict[str, Any] | None = None,
    partial: str | os.PathLike | None = None,
    dist: DistContext | None = None,
) -> pd.DataFrame:
    """Answer losses and log-odds of every pair at every multiplier (and layer).

    ``layers``: sweep these layers too; the updates at each layer come from
    ``update_factory(layer)``, or by moving the steering vectors of ``updates`` there
    (:func:`replace_at_layer`). ``batch_rows``: ``(pair, m)`` rows per forward pass (a multi-token
    row is two sequences). ``output``: also write the table (``.csv`` or ``.parquet``).

    ``partial``: a JSONL file the rows are appended to as each chunk completes. A rerun with the same
    pairs, updates and grid reuses the rows found there (so a killed or failed sweep resumes), and a
    non-finite loss stops the sweep at once (:class:`NonFiniteResultError`) with the rows done so far
    kept there. Delete it when the table is saved.

    ``dist``: the ranks to share the work with (default: those of the enclosing
    :func:`easyedit_split.core.distributed.distributed` block, else one process). Every rank must call ``sweep`` with the
    same arguments; each runs its share of the forwards and every rank returns the whole table,
    identical bit for bit to the one-process table. A partial file is not used under torchrun.
    """
    if batch_rows < 1:
        raise InputError(f"batch_rows must be >= 1, got {batch_rows}")
    ups = [updates] if isinstance(updates, Update) else list(updates)
    check_updates_finite(ups, "the swept updates")
    grid, encoded, pad = _sweep_inputs(model, tokenizer, pairs_or_encoded, multipliers, encode_kwargs, pad_token_id)
    layer_list: list[int | None] = list(layers) if layers is not None else [None]
    if layers is None and update_factory is not None:
        raise InputError("update_factory needs layers=[...]")
    dist = dist or current()
    total = len(encoded) * grid.size * len(layer_list)
    bar = progress_bar(total=-(-total // dist.world_size), desc="sweep (pair, m) rows", unit="row",
                       enabled=progress and dist.is_main)  # this rank's share (about)
    appender = JsonlAppender(partial) if partial is not None else None
    frames = []
    try:
        for layer in layer_list:
            if layer is None:
                lu = ups
            else:
                lu = list(update_factory(layer)) if update_factory is not None else replace_at_layer(ups, layer)
            df = _sweep_updates(model, encoded, [lu], grid, pad_token_id=pad, batch_rows=batch_rows,
                                use_prefix_cache=use_prefix_cache, single_token_sharing=single_token_sharing, bar=bar,
                                partial=appender, run_key=_run_key(encoded, lu, grid, layer), dist=dist)
            if layer is not None:
                df.insert(1, "layer", layer)
            frames.append(df)
    finally:
        if bar is not None:
            bar.close()
    table = add_log_odds(pd.concat(frames, ignore_index=True))
    if method is not None:
        table.insert(1, "method", method)
    if output is not None and dist.is_main:
        write_table(table, output)
    return table


def sweep_many(
    model: nn.Module,
    tokenizer: Any,
    pairs_or_encoded: Sequence[PolarityPair | EncodedPair],
    updates: Mapping[str, Sequence[Update] | Update],
    multipliers: Iterable[float],
    *,
    batch_rows: int = 128,
    use_prefix_cache: bool = True,
    single_token_sharing: bool = True,
    pad_token_id: int | None = None,
    progress: bool = True,
    output: str | os.PathLike | None = None,
    encode_kwargs: dict[str, Any] | None = None,
    dist: DistContext | None = None,
) -> pd.DataFrame:
    """Several updates (``{method name: updates}``) over the same pairs and multipliers in one pass.

    Rows of different updates share forwards (mixed-update batches,
    :func:`~easyedit_split.core.apply.apply_mixed_updates`): a batch of ``batch_rows`` rows holds
    ``(update, pair, m)`` rows of every update. The table is :func:`sweep`'s with a ``method`` column,
    rows ordered by method (as given), then ``m``, then pair; each method's rows equal its own
    :func:`sweep` to float rounding (≤ 1e-6 relative in float32; steering vectors exactly). Shared over
    ranks under torchrun as :func:`sweep` is.
    """
    if batch_rows < 1:
        raise InputError(f"batch_rows must be >= 1, got {batch_rows}")
    if not updates:
        raise InputError("sweep_many needs at least one named update")
    names = list(updates)
    groups = [[u] if isinstance(u, Update) else list(u) for u in updates.values()]
    for name, g in zip(names, groups):
        if not g:
            raise InputError(f"update {name!r} has no updates")
        check_updates_finite(g, f"the swept updates of {name!r}")
    grid, encoded, pad = _sweep_inputs(model, tokenizer, pairs_or_encoded, multipliers, encode_kwargs, pad_token_id)
    dist = dist or current()
    bar = progress_bar(total=-(-len(encoded) * grid.size * len(groups) // dist.world_size),
                       desc="sweep (update, pair, m) rows", unit="row", enabled=progress and dist.is_main)
    try:
        df = _sweep_updates(model, encoded, groups, grid, pad_token_id=pad, batch_rows=batch_rows,
                            use_prefix_cache=use_prefix_cache, single_token_sharing=single_token_sharing, bar=bar,
                            dist=dist)
    finally:
        if bar is not None:
            bar.close()
    if len(groups) == 1:
        df.insert(1, "_k", 0)
    df.insert(1, "method", np.asarray(names, dtype=object)[df["_k"].to_numpy().astype(np.int64)])
    table = add_log_odds(df.drop(columns=["_k"]))
    if output is not None and dist.is_main:
        write_table(table, output)
    return table


def _run_key(encoded: Sequence[EncodedPair], updates: Sequence[Update], grid: np.ndarray, layer: int | None) -> str:
    """What a sweep's rows depend on: the pairs' tokens, the updates' tensors and sites, the grid, the layer."""
    from easyedit_split.core.serialization import tensors_checksum
    from easyedit_split.training.trainer import data_fingerprint

    h = hashlib.sha256()
    h.update(data_fingerprint(encoded).encode())
    for i, u in enumerate(updates):
        h.update(f"{i}|{u.form_key}|{u.site}|".encode())
        h.update(tensors_checksum({n: p.detach() for n, p in u.named_parameters()}).encode())
    h.update(f"{grid.tolist()}|{layer}".encode())
    return h.hexdigest()[:16]


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` atomically as CSV (``.csv``) or Parquet (``.parquet``/``.pq``)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise InputError(f"{p}: table output must end in .csv or .parquet")
    with atomic_path(p, suffix=suffix) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    logger.info("wrote %d rows to %s", len(df), p)
    return p


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"sweep table {p} does not exist")
    if p.suffix.lower() == ".csv":
        return pd.read_csv(p)
    return pd.read_parquet(p)
