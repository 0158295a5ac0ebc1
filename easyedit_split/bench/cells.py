"""The plan of the benchmark (cells: concept × method × form) and running one cell.

A trained cell trains the method on the concept's training pairs with its hparams YAML
(:func:`~easyedit_split.training.api.train_layers`), sweeps the validation pairs over ``m = 0`` and
the grid's positive multipliers and the test pairs over the whole grid
(:func:`~easyedit_split.evaluation.sweep.sweep`), chooses the factor on validation
(:func:`~.select.choose_factor`), fits both curves on the test means
(:func:`~easyedit_split.evaluation.api.fit_summary`) and finds UtilOdds at matched accuracy with ``m*``
from the validation pairs (:func:`~easyedit_split.evaluation.frontier.matched_accuracy`). The prompt
baseline (:class:`~easyedit_split.adapters.prompt_baseline.PromptBaseline`) is a point, not a curve: the
unmodified model on prompted questions.

Every cell's result is one JSON file (written atomically) that records its settings and their
fingerprint; a file is reused only when the fingerprint matches the planned cell's.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from easyedit_split import __version__
from easyedit_split.base.atomic_io import atomic_write_json
from easyedit_split.base.defaults import hparams_file_name, packaged_hparams_dir
from easyedit_split.base.methods import FORM_NAMES, METHOD_NAMES, method_spec
from easyedit_split.bench.concepts import ConceptSplit, digest
from easyedit_split.bench.select import RULE as SELECT_RULE
from easyedit_split.bench.select import choose_factor
from easyedit_split.errors import EasyEditSplitError, InputError

logger = logging.getLogger(__name__)

__all__ = ["BENCH_METHODS", "PROMPT_TEMPLATE", "Cell", "CellSetup", "assigned", "assigned_by_concept", "cell_forms",
           "finish_trained", "is_trained", "plan_cells", "read_cell", "run_cell", "stored_fingerprint",
           "train_cell"]

#: the prompt baseline's prompt; ``{concept}`` is the concept's file name with '-' and '_' read as spaces
PROMPT_TEMPLATE = "Answer as someone with this trait: {concept}."
#: the methods a benchmark can run: every trained method of the method table, DiffMean, and the prompt baseline
BENCH_METHODS: tuple[str, ...] = (*METHOD_NAMES, "prompt")
PROMPT_FORM = "prompt"
FAIL_MARGIN = 0.10  # a method fails on a concept when its accuracy at the chosen factor is below unsteered + this


@dataclass(frozen=True)
class Cell:
    concept: str
    method: str
    form: str

    @property
    def name(self) -> str:
        """``split_vector``, ``diffmean_vector``, ``prompt`` — the column the cell fills."""
        return self.method if self.form == PROMPT_FORM else f"{self.method}_{self.form}"

    @property
    def key(self) -> str:
        return f"{self.concept}/{self.name}"

    def path(self, out: Path) -> Path:
        return Path(out) / "cells" / self.concept / f"{self.name}.json"

    def update_path(self, out: Path) -> Path:
        """Where ``--mixed-sweeps`` keeps the cell's trained update (so a killed run does not train it again)."""
        return Path(out) / "cells" / self.concept / f"{self.name}.safetensors"


def cell_forms(method: str, forms: Sequence[str]) -> tuple[str, ...]:
    """The forms a method runs in: the prompt baseline one point, a train-free method (DiffMean) the
    vector only, a trained method every requested form."""
    if method == "prompt":
        return (PROMPT_FORM,)
    if not method_spec(method).trained:
        return ("vector",)
    return tuple(forms)


def plan_cells(concepts: Sequence[str], methods: Sequence[str], forms: Sequence[str]) -> list[Cell]:
    """Every cell, concept by concept (so a finished concept is complete before the next starts)."""
    bad = [m for m in methods if m not in BENCH_METHODS]
    if bad:
        raise InputError(f"unknown method(s) {bad}; the benchmark runs {', '.join(BENCH_METHODS)}")
    bad_forms = [f for f in forms if f not in FORM_NAMES]
    if bad_forms:
        raise InputError(f"unknown form(s) {bad_forms}; use {', '.join(FORM_NAMES)}")
    cells, seen = [], set()
    for concept in concepts:
        for method in methods:
            for form in cell_forms(method, forms):
                cell = Cell(concept, method, form)
                if cell.key not in seen:
                    seen.add(cell.key)
                    cells.append(cell)
    return cells


def assigned(items: Sequence[Any], ctx) -> list[Any]:
    """The items of rank ``ctx.rank`` of ``ctx.world_size``: every ``world_size``-th one, starting at the
    rank (a fixed round robin: concepts are planned one after another, so each rank gets cells of every
    method, and a rerun gives every rank the same cells)."""
    return [item for i, item in enumerate(items) if i % ctx.world_size == ctx.rank]


def assigned_by_concept(cells: Sequence[Cell], ctx) -> list[Cell]:
    """The cells of this rank's concepts (every ``world_size``-th concept of the plan): all cells of a
    concept on one rank, as a mixed sweep of the concept's updates needs."""
    concepts = list(dict.fromkeys(c.concept for c in cells))
    mine = set(assigned(concepts, ctx))
    return [c for c in cells if c.concept in mine]


# ----------------------------------------------------------------------------------------- settings


@dataclass
class CellSetup:
    """What every cell of one run shares: the settings that enter its fingerprint and the hparams source."""

    model_id: str
    dtype: str
    grid: tuple[float, ...]
    seed: int
    matched_targets: tuple[float, ...]
    n_boot: int
    fit_boot: int
    hparams_dir: Path | None
    overrides: Mapping[str, Mapping[str, Any]]  # "method" or "method_form" -> hparams overrides
    layer: int | None
    prompt_template: str

    @property
    def val_grid(self) -> tuple[float, ...]:
        return (0.0, *sorted(m for m in self.grid if m > 0))

    def hparams_path(self, method: str, form: str) -> Path:
        folder = self.hparams_dir or packaged_hparams_dir()
        path = Path(folder) / hparams_file_name(method, form)
        if not path.is_file():
            raise InputError(f"hparams file {path} not found (give --hparams-dir a folder with "
                             f"{hparams_file_name(method, form)}, as in the repository's hparams/smollm2)")
        return path

    def hparams(self, method: str, form: str, seed: int):
        """The method's training hparams: its YAML, then this run's overrides; the benchmark's own split
        replaces the YAML's ``test_size``/``max_num_of_examples`` and nothing is saved to disk."""
        from easyedit_split.training.api import load_train_hparams

        over: dict[str, Any] = {"alg_name": method, **dict(self.overrides.get(method, {})),
                                **dict(self.overrides.get(f"{method}_{form}", {}))}
        if self.layer is not None:
            over["layers"] = [self.layer]
        over.update(test_size=None, max_num_of_examples=None, save_vectors=False, seed=seed)
        if method_spec(method).trained:
            over["checkpoint_every"] = 0  # no checkpoint files: a cell is redone whole
        hp = load_train_hparams(self.hparams_path(method, form), over)
        if hp.form != form:
            raise InputError(f"{self.hparams_path(method, form)}: intervention_method is {hp.form!r}, not {form!r}")
        return hp

    def prompt(self, concept: str) -> str:
        return self.prompt_template.format(concept=concept.replace("-", " ").replace("_", " "))

    def settings(self, cell: Cell, split: ConceptSplit) -> dict[str, Any]:
        """Everything the cell's result depends on (its fingerprint is their digest)."""
        common = {"package_version": __version__, "model": self.model_id, "dtype": self.dtype,
                  "grid": list(self.grid), "val_grid": list(self.val_grid), "seed": self.seed,
                  "matched_targets": list(self.matched_targets), "n_boot": self.n_boot, "fit_boot": self.fit_boot,
                  "data": split.digests(), "sizes": {p: len(getattr(split, p)) for p in ("train", "val", "test")},
                  "select_rule": SELECT_RULE, "concept": cell.concept, "method": cell.method, "form": cell.form}
        if cell.method == "prompt":
            render = self.hparams("split", "vector", self.seed)
            return {**common, "prompt": self.prompt(cell.concept), "rendering": _rendering(render)}
        hp = self.hparams(cell.method, cell.form, self.seed)
        path = self.hparams_path(cell.method, cell.form)
        return {**common, "hparams": hp.to_dict(), "hparams_file": path.name,
                "hparams_file_sha": digest(path.read_text(encoding="utf-8"))}


def _rendering(hp) -> dict[str, Any]:
    return {"use_chat_template": hp.use_chat_template, "system_prompt": hp.system_prompt,
            "answer_instruction": getattr(hp, "answer_instruction", None)}


# ------------------------------------------------------------------------------------------ running


def _per_m(summary) -> dict[str, dict[str, float]]:
    return {f"{m:g}": {"accuracy": float(a), "pref": float(p), "util": float(u)}
            for m, a, p, u in zip(summary["m"], summary["accuracy"], summary["pref"], summary["util"])}


def _matrices(data) -> dict[str, Any]:
    return {"ids": data.ids, "grid": data.grid.tolist(), "correct": data.correct.astype(int).tolist(),
            "util": data.util.tolist()}


def per_example_from(record: Mapping[str, Any]):
    """The stored matrices of a cell file as :class:`~easyedit_split.evaluation.frontier.PerExample`."""
    from easyedit_split.evaluation.frontier import PerExample

    util = np.array([[math.nan if v is None else v for v in row] for row in record["util"]], dtype=np.float64)
    return PerExample(list(record["ids"]), np.asarray(record["grid"], dtype=np.float64),
                      np.asarray(record["correct"], dtype=np.float64), util)


def _at(per_m: Mapping[str, Mapping[str, float]], m: float) -> dict[str, float]:
    return dict(per_m.get(f"{m:g}", {"accuracy": math.nan, "pref": math.nan, "util": math.nan}))


def _zero_update(model, layer: int):
    from easyedit_split.core.sites import Site, resolve_site
    from easyedit_split.core.updates import VectorUpdate

    site = Site(layer, "residual")
    return VectorUpdate(site, resolve_site(model, site).d_out).to(next(model.parameters()).device)


def is_trained(cell: Cell) -> bool:
    """Whether the cell makes an update (trained or computed) and sweeps it; the prompt baseline does not."""
    return cell.method not in CELL_RUNNERS


def train_cell(setup: CellSetup, cell: Cell, split: ConceptSplit, model, tok, timings: dict[str, float]):
    """Train (or compute) the cell's update(s); returns (updates, hparams, final losses)."""
    from easyedit_split.training.api import train_layers

    hp = setup.hparams(cell.method, cell.form, setup.seed)
    t = time.perf_counter()
    result = train_layers(hp, split.train, model, tok, output_dir=None, progress=False)
    timings["train"] = time.perf_counter() - t
    losses = [layer.final_loss for layer in result.layers]
    return [layer.update for layer in result.layers], hp, losses


def _trained_cell(setup: CellSetup, cell: Cell, split: ConceptSplit, model, tok) -> dict[str, Any]:
    from easyedit_split.evaluation.sweep import sweep
    from easyedit_split.training.trainer import encode_for

    timings: dict[str, float] = {}
    updates, hp, losses = train_cell(setup, cell, split, model, tok, timings)
    t = time.perf_counter()
    val_table = sweep(model, tok, encode_for(hp, split.val, tok), updates, setup.val_grid, progress=False,
                      method=cell.name)
    test_table = sweep(model, tok, encode_for(hp, split.test, tok), updates, setup.grid, progress=False,
                       method=cell.name)
    timings["sweep"] = time.perf_counter() - t
    return finish_trained(setup, cell, val_table, test_table, losses, timings)


def finish_trained(setup: CellSetup, cell: Cell, val_table, test_table, losses: Sequence[float],
                   timings: dict[str, float]) -> dict[str, Any]:
    """A trained cell's numbers from its validation and test sweep tables: the factor chosen on validation,
    the test metrics at it and at m = 1 and 2, the fits and UtilOdds at matched accuracy."""
    from easyedit_split.evaluation.api import fit_summary
    from easyedit_split.evaluation.frontier import matched_accuracy, per_example
    from easyedit_split.evaluation.logodds import summarize

    t = time.perf_counter()
    test_summary = summarize(test_table, reduction="sum", n_boot=0)
    val_per_m = _per_m(summarize(val_table, reduction="sum", n_boot=0))
    test_per_m = _per_m(test_summary)
    chosen = choose_factor({float(k): v for k, v in val_per_m.items()})
    fits = fit_summary(test_summary, cell.name, test_table, "sum", n_boot=setup.fit_boot, seed=setup.seed)
    timings["fit"] = time.perf_counter() - t
    test_pe, val_pe = per_example(test_table), per_example(val_table)
    matched = []
    for target in setup.matched_targets:
        row = matched_accuracy({cell.name: test_pe}, float(target), validation={cell.name: val_pe},
                               n_boot=setup.n_boot, seed=setup.seed).rows[0]
        matched.append({"target": float(target), "m_star": row.m_star, "accuracy": row.accuracy, "util": row.util,
                        "util_lo": row.util_lo, "util_hi": row.util_hi})
    return {
        "unsteered": _at(test_per_m, 0.0),
        "chosen": {**chosen.to_dict(), **_at(test_per_m, chosen.m)},
        "at_1": _at(test_per_m, 1.0), "at_2": _at(test_per_m, 2.0),
        "dial": _at(test_per_m, 2.0)["accuracy"] - _at(test_per_m, 1.0)["accuracy"],
        "per_m": test_per_m, "val_per_m": val_per_m, "matched": matched,
        "fits": {k: {"r2": f.r2, "status": f.status, "message": f.message, "n_params": f.n_params,
                     "r2_ci": f.r2_ci} for k, f in fits.items()},
        "final_loss": list(losses), "timings": timings,
        "per_example": {"test": _matrices(test_pe), "val": _matrices(val_pe)},
    }


def _prompt_cell(setup: CellSetup, cell: Cell, split: ConceptSplit, model, tok) -> dict[str, Any]:
    from easyedit_split.adapters.prompt_baseline import PromptBaseline
    from easyedit_split.evaluation.logodds import summarize
    from easyedit_split.evaluation.sweep import sweep
    from easyedit_split.training.trainer import encode_for

    render = setup.hparams("split", "vector", setup.seed)
    zero = [_zero_update(model, int(render.layers[0]))]
    baseline = PromptBaseline(setup.prompt(cell.concept))
    t = time.perf_counter()

    def point(pairs) -> dict[str, float]:
        table = sweep(model, tok, encode_for(render, pairs, tok), zero, [0.0], progress=False, method=cell.name)
        return _at(_per_m(summarize(table, reduction="sum", n_boot=0)), 0.0)

    unsteered = point(split.test)
    prompted = point(baseline.apply_to_pairs(split.test))
    val = point(baseline.apply_to_pairs(split.val))
    nan = {"accuracy": math.nan, "pref": math.nan, "util": math.nan}
    return {"unsteered": unsteered, "prompt": baseline.prompt,
            "chosen": {"m": None, "val_accuracy": val["accuracy"], "val_util": val["util"], **prompted},
            "at_1": nan, "at_2": nan, "dial": math.nan, "per_m": {}, "val_per_m": {}, "matched": [], "fits": {},
            "final_loss": [], "timings": {"sweep": time.perf_counter() - t}}


#: how each kind of cell is run: the prompt baseline has its own runner, every other method trains
CELL_RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {"prompt": _prompt_cell}


def run_cell(setup: CellSetup, cell: Cell, split: ConceptSplit, model, tok, *, settings: dict[str, Any],
             out: Path, rank: int = 0, runner: Callable[..., dict[str, Any]] | None = None,
             mixed_sweep: bool = False, seconds_before: float = 0.0) -> dict[str, Any]:
    """Run one cell and write its file atomically. Bad input or a non-finite result inside the cell (e.g. a
    diverged training) is recorded as the cell's ``error`` rather than stopping the benchmark.

    ``runner``: what computes the cell's body (default: by method, :data:`CELL_RUNNERS`, else train and
    sweep); the mixed path passes one that finishes from its shared sweep, with ``mixed_sweep`` recorded
    and ``seconds_before`` (the cell's training) added to its time."""
    t0 = time.perf_counter() - seconds_before
    runner = runner or CELL_RUNNERS.get(cell.method, _trained_cell)
    try:
        body = runner(setup, cell, split, model, tok)
        status, error = "ok", None
    except EasyEditSplitError as exc:
        logger.warning("%s failed: %s", cell.key, exc)
        body, status, error = {}, "error", f"{type(exc).__name__}: {exc}"
    unsteered = body.get("unsteered", {}).get("accuracy", math.nan)
    chosen_acc = body.get("chosen", {}).get("accuracy", math.nan)
    failed = status != "ok" or not (chosen_acc >= unsteered + FAIL_MARGIN - 1e-12)
    record = {"concept": cell.concept, "method": cell.method, "form": cell.form, "name": cell.name,
              "status": status, "error": error, "failed": bool(failed), "fail_margin": FAIL_MARGIN,
              **body, "seconds": time.perf_counter() - t0, "rank": rank, "mixed_sweep": bool(mixed_sweep),
              "fingerprint": digest(settings), "settings": settings}
    atomic_write_json(cell.path(out), record)
    return record


def read_cell(cell: Cell, out: Path, fingerprint: str) -> dict[str, Any] | None:
    """The cell's file when it exists and was made with the same settings; else None."""
    import json

    path = cell.path(out)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        logger.warning("%s is unreadable; the cell runs again", path)
        return None
    if record.get("fingerprint") != fingerprint:
        return None
    return record


def stored_fingerprint(path: Path) -> str | None:
    """The cell fingerprint recorded in a kept update file (``--mixed-sweeps``), or None when the file is
    missing or unreadable."""
    from easyedit_split.core.serialization import metadata_json, read_metadata

    try:
        extra = metadata_json(read_metadata(path).get("extra", "{}"), "extra", path)
    except (OSError, EasyEditSplitError, ValueError):
        return None
    return extra.get("cell_fingerprint") if isinstance(extra, dict) else None
