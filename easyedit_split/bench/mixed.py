"""``--mixed-sweeps``: a concept's cells trained first, then all of its updates swept in one mixed pass.

Per concept (:func:`run_concept_mixed`): every trained cell's update is trained (or computed) and kept
in ``cells/<concept>/<name>.safetensors`` (written atomically with
:func:`~easyedit_split.core.serialization.save_updates`, with the cell's fingerprint in its metadata),
so a killed run loads it instead of training again; then the validation pairs and the test pairs are
swept once each for all of the concept's updates with
:func:`~easyedit_split.evaluation.sweep.sweep_many` (rows of different updates share forwards), and
each cell is finished from its rows exactly as on the per-cell path
(:func:`~.cells.finish_trained`). Cells whose prompts render differently (another chat template or
system prompt in their YAML) are swept in separate passes. The prompt baseline has no weights and runs
as on the per-cell path.

The rows equal the per-cell sweeps' to float rounding (a mixed batch holds fewer pairs of each update,
so the base model's forwards see other padding and batch shapes): accuracies are the same and the odds
differ by ~1e-6 (``tests/test_bench.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easyedit_split.bench.cells import (
    Cell,
    CellSetup,
    finish_trained,
    is_trained,
    run_cell,
    stored_fingerprint,
    train_cell,
)
from easyedit_split.bench.concepts import ConceptSplit, digest
from easyedit_split.errors import EasyEditSplitError

logger = logging.getLogger(__name__)

__all__ = ["run_concept_mixed"]


@dataclass
class _Prepared:
    """A trained cell before its sweeps: its update(s), hparams, losses and timings, or the error it raised."""

    hp: Any = None
    updates: list[Any] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # training (or loading) time, added to the cell's time
    error: EasyEditSplitError | None = None
    tables: tuple[Any, Any] | None = None  # (validation, test) sweep tables


def _kept_or_trained(setup: CellSetup, cell: Cell, split: ConceptSplit, model, tok, fingerprint: str,
                     out: Path) -> _Prepared:
    from easyedit_split.core.serialization import load_updates, save_updates

    t0 = time.perf_counter()
    path = cell.update_path(out)
    if stored_fingerprint(path) == fingerprint:
        try:
            bundle = load_updates(path, model)
        except EasyEditSplitError as exc:  # a damaged file: train again
            logger.warning("%s: %s; training the cell again", path, exc)
        else:
            hp = setup.hparams(cell.method, cell.form, setup.seed)
            train_s = float(bundle.extra.get("train_seconds", 0.0))
            logger.info("%s: update reused from %s", cell.key, path)
            return _Prepared(hp, list(bundle.updates), list(bundle.extra.get("final_loss", [])),
                             {"train": train_s, "update_reused": 1.0}, time.perf_counter() - t0)
    timings: dict[str, float] = {}
    updates, hp, losses = train_cell(setup, cell, split, model, tok, timings)
    try:
        save_updates(path, updates, model=model, method=cell.method, hparams=hp.to_dict(),
                     extra={"cell_fingerprint": fingerprint, "cell": cell.key, "final_loss": list(losses),
                            "train_seconds": timings["train"]})
    except EasyEditSplitError as exc:  # e.g. an all-zero update: the cell is still swept, only not kept
        logger.warning("%s: the update is not kept (%s)", cell.key, exc)
    return _Prepared(hp, updates, list(losses), timings, time.perf_counter() - t0)


def _encodings(prepared: Mapping[Cell, _Prepared], split: ConceptSplit, tok) -> dict[tuple[str, str], list[Cell]]:
    """The cells grouped by how their validation and test pairs render (one mixed pass per group)."""
    from easyedit_split.training.trainer import data_fingerprint, encode_for

    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell, p in prepared.items():
        key = (data_fingerprint(encode_for(p.hp, split.val, tok)), data_fingerprint(encode_for(p.hp, split.test, tok)))
        groups.setdefault(key, []).append(cell)
    return groups


def _sweep_group(setup: CellSetup, cells: Sequence[Cell], prepared: Mapping[Cell, _Prepared], split: ConceptSplit,
                 model, tok) -> None:
    """One mixed pass over the validation pairs and one over the test pairs for ``cells``; on an error in
    the pass (a non-finite loss of one update), each cell is swept alone so that only its cell fails."""
    from easyedit_split.evaluation.sweep import sweep, sweep_many
    from easyedit_split.training.trainer import encode_for

    hp = prepared[cells[0]].hp
    val, test = encode_for(hp, split.val, tok), encode_for(hp, split.test, tok)
    updates = {c.name: prepared[c].updates for c in cells}
    t = time.perf_counter()
    try:
        val_table = sweep_many(model, tok, val, updates, setup.val_grid, progress=False)
        test_table = sweep_many(model, tok, test, updates, setup.grid, progress=False)
    except EasyEditSplitError as exc:
        logger.warning("mixed sweep of %s failed (%s); sweeping each cell alone", ", ".join(c.key for c in cells), exc)
        for c in cells:
            t = time.perf_counter()
            try:
                prepared[c].tables = (
                    sweep(model, tok, val, prepared[c].updates, setup.val_grid, progress=False, method=c.name),
                    sweep(model, tok, test, prepared[c].updates, setup.grid, progress=False, method=c.name))
            except EasyEditSplitError as cell_exc:
                prepared[c].error = cell_exc
            prepared[c].timings["sweep"] = time.perf_counter() - t
        return
    seconds = time.perf_counter() - t
    for c in cells:
        prepared[c].tables = (val_table[val_table["method"] == c.name].reset_index(drop=True),
                              test_table[test_table["method"] == c.name].reset_index(drop=True))
        prepared[c].timings.update(sweep=seconds / len(cells), sweep_shared=seconds, sweep_cells=float(len(cells)))


def run_concept_mixed(setup: CellSetup, cells: Sequence[Cell], split: ConceptSplit, model, tok, *,
                      settings: Mapping[str, dict[str, Any]], out: Path, rank: int = 0,
                      before_cell: Callable[[Cell], None] = lambda cell: None,
                      after_cell: Callable[[dict[str, Any], Cell], None] = lambda record, cell: None) -> None:
    """Run ``cells`` (all of one concept) with one mixed sweep of their updates; each cell's file is
    written as :func:`~.cells.run_cell` writes it. ``settings``: ``{cell key: its settings}``;
    ``before_cell`` is called before a cell is trained (or, for the prompt baseline, run)."""
    prepared: dict[Cell, _Prepared] = {}
    for cell in cells:
        if not is_trained(cell):
            continue
        before_cell(cell)
        t0 = time.perf_counter()
        try:
            prepared[cell] = _kept_or_trained(setup, cell, split, model, tok, digest(settings[cell.key]), out)
        except EasyEditSplitError as exc:
            logger.warning("%s failed: %s", cell.key, exc)
            prepared[cell] = _Prepared(error=exc, seconds=time.perf_counter() - t0)
    ready = {c: p for c, p in prepared.items() if p.error is None}
    for group in _encodings(ready, split, tok).values():
        _sweep_group(setup, group, prepared, split, model, tok)
    for cell in cells:
        if not is_trained(cell):
            before_cell(cell)
            record = run_cell(setup, cell, split, model, tok, settings=settings[cell.key], out=out, rank=rank)
            after_cell(record, cell)
            continue
        p = prepared[cell]

        def finish(*_: Any, p: _Prepared = p, cell: Cell = cell) -> dict[str, Any]:
            if p.error is not None:
                raise p.error
            return finish_trained(setup, cell, p.tables[0], p.tables[1], p.losses, p.timings)

        record = run_cell(setup, cell, split, model, tok, settings=settings[cell.key], out=out, rank=rank,
                          runner=finish, mixed_sweep=True, seconds_before=p.seconds)
        after_cell(record, cell)
