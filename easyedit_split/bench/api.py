"""``run_bench``: every method on many concepts, one atomic result per cell, then the aggregate report.

Output folder::

    <output>/bench.json                  the run's settings, concepts, their roles and data digests
    <output>/cells/<concept>/<name>.json one file per cell (concept × method × form), with its fingerprint
    <output>/concepts/<concept>.json     a concept's cells together, with the paired matched-accuracy
                                         comparison to SPLIT on that concept's pairs
    <output>/results.json, report.md, *.png   the aggregate across concepts (:mod:`.report`)

A rerun of the same command reuses every cell file whose fingerprint matches and runs the rest; a folder
holding a run with other settings is refused unless ``overwrite`` (then the files of other settings are
deleted, never mixed in).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easyedit_split import __version__
from easyedit_split.base.atomic_io import atomic_write_json, check_writable, output_lock
from easyedit_split.base.checks import set_threads
from easyedit_split.base.multipliers import parse_multipliers
from easyedit_split.bench.cells import (
    BENCH_METHODS,
    PROMPT_TEMPLATE,
    Cell,
    CellSetup,
    assigned,
    assigned_by_concept,
    plan_cells,
    read_cell,
    run_cell,
    stored_fingerprint,
)
from easyedit_split.bench.concepts import (
    ConceptSplit,
    concept_files,
    digest,
    embedded_concepts_dir,
    load_concept_pairs,
    roles_for,
    split_pairs,
)
from easyedit_split.core.distributed import DistContext, distributed
from easyedit_split.errors import InputError, OutputError
from easyedit_split.evaluation.fitting import MIN_EXTRA_POINTS, n_free_params

logger = logging.getLogger(__name__)

__all__ = ["FULL_GRID", "QUICK", "QUICK_GRID", "BenchConfig", "BenchResult", "BenchSettingsError", "run_bench"]

FULL_GRID = (-6.0, -4.0, -3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
#: the smallest grid on which both design-form fits run (11 points, 3 below 0), with 0, 1 and 2
QUICK_GRID = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
ROLES = ("report", "tuning", "all")
#: environment variable that makes the process kill itself before the named cell (tests of resuming)
KILL_AT_ENV = "EASYEDIT_SPLIT_BENCH_KILL_AT"
#: how long a rank waits at a barrier for the others (a rank's cells can take hours)
BARRIER_TIMEOUT_S = 24 * 3600.0


class BenchSettingsError(OutputError):
    """The output folder holds a benchmark run with other settings or data."""


@dataclass
class BenchConfig:
    model: str | None = None  # None: the built-in SmolLM2-135M-Instruct
    dtype: str = "float32"
    device: str | None = None  # None: cuda:LOCAL_RANK where CUDA is available, else cpu
    concepts_dir: str | None = None  # None: the embedded persona subset
    concepts: tuple[str, ...] | None = None  # explicit concept names (default: every concept of `role`)
    role: str = "report"  # report | tuning | all
    max_concepts: int | None = None  # the first N of the chosen concepts (sorted by name)
    methods: tuple[str, ...] = ("split", "sft", "reps", "diffmean", "prompt")
    forms: tuple[str, ...] = ("vector",)
    hparams_dir: str | None = None  # None: the shipped SmolLM2 defaults
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # "method" / "method_form" -> hparams keys
    layer: int | None = None
    n_train: int = 160
    n_val: int = 40
    n_test: int = 100
    multipliers: tuple[float, ...] = FULL_GRID
    matched_accuracy: tuple[float, ...] = (0.75,)
    n_boot: int = 1000  # bootstrap over a concept's pairs (matched accuracy)
    concept_boot: int = 2000  # bootstrap over concepts (the aggregate)
    fit_boot: int = 0  # bootstrap refits of the curves per cell (0: R² without intervals)
    seed: int = 0
    prompt_template: str = PROMPT_TEMPLATE
    threads: int | None = None
    output_dir: str | None = None
    overwrite: bool = False
    progress: bool = True
    plots: bool = True
    report_only: bool = False  # run no cell: aggregate the concepts whose cells are all done
    # per concept: train every cell, then sweep all of its updates in one mixed pass (sweep_many); the
    # results equal the per-cell sweeps to float rounding, so it is recorded but not in the fingerprints
    mixed_sweeps: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: the --quick preset: 8 report concepts, fewer pairs, the smallest grid the fits accept
QUICK: dict[str, Any] = {"max_concepts": 8, "n_train": 40, "n_val": 24, "n_test": 40, "multipliers": QUICK_GRID}


@dataclass
class BenchResult:
    output_dir: Path
    results: dict[str, Any] | None  # the aggregate (rank 0; None on other ranks)
    cells_run: list[str]
    cells_reused: list[str]
    seconds: float


def _check_config(cfg: BenchConfig) -> tuple[float, ...]:
    grid = tuple(sorted(parse_multipliers(cfg.multipliers, what="multipliers")))
    for need in (0.0, 1.0, 2.0):
        if need not in grid:
            raise InputError(f"the multiplier grid must contain {need:g} (unsteered, and the dial from m = 1 to 2); "
                             f"got {list(grid)}")
    k = max(n_free_params("pref", "design"), n_free_params("util", "design")) + MIN_EXTRA_POINTS
    if len(grid) < k or sum(m < 0 for m in grid) < 2 or sum(m > 0 for m in grid) < 2:
        raise InputError(f"the multiplier grid has {len(grid)} points; the curve fits need at least {k}, with at "
                         f"least 2 below and 2 above 0 (e.g. {','.join(f'{m:g}' for m in QUICK_GRID)})")
    if cfg.role not in ROLES:
        raise InputError(f"role must be one of {', '.join(ROLES)}, got {cfg.role!r}")
    bad = [m for m in cfg.methods if m not in BENCH_METHODS]
    if bad or not cfg.methods:
        raise InputError(f"methods: unknown or none {bad}; choose from {', '.join(BENCH_METHODS)}")
    if "{concept}" not in cfg.prompt_template and "prompt" in cfg.methods:
        logger.warning("the prompt template has no {concept}: every concept gets the same prompt")
    for t in cfg.matched_accuracy:
        if not 0 < t <= 1:
            raise InputError(f"matched accuracy targets must be in (0, 1], got {t}")
    if cfg.max_concepts is not None and cfg.max_concepts < 1:
        raise InputError(f"max_concepts must be >= 1, got {cfg.max_concepts}")
    return grid


def _select_concepts(cfg: BenchConfig) -> tuple[dict[str, Path], Any, str]:
    folder = Path(cfg.concepts_dir).expanduser() if cfg.concepts_dir else embedded_concepts_dir()
    files = concept_files(folder)
    roles = roles_for(files, seed=cfg.seed)
    if cfg.concepts:
        missing = [c for c in cfg.concepts if c not in files]
        if missing:
            raise InputError(f"concept(s) {missing} not in {folder}; it holds {', '.join(files)}")
        names = sorted(set(cfg.concepts))
    else:
        names = list(files) if cfg.role == "all" else getattr(roles, cfg.role)
        if not names:
            raise InputError(f"{folder} has no {cfg.role} concepts (roles: {len(roles.tuning)} tuning, "
                             f"{len(roles.report)} report); use --role all or --concepts")
    if cfg.max_concepts is not None:
        names = names[: cfg.max_concepts]
    source = "embedded" if not cfg.concepts_dir else str(folder)
    return {n: files[n] for n in names}, roles, source


def _bench_settings(cfg: BenchConfig, grid, setup: CellSetup, splits: dict[str, ConceptSplit], cells: list[Cell],
                    roles, source: str, fingerprints: dict[str, str]) -> dict[str, Any]:
    return {"package_version": __version__, "model": setup.model_id, "dtype": cfg.dtype, "grid": list(grid),
            "seed": cfg.seed, "sizes": {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test},
            "methods": list(cfg.methods), "forms": list(cfg.forms), "matched_accuracy": list(cfg.matched_accuracy),
            "concepts_source": source, "concepts": {c: s.digests() for c, s in splits.items()},
            "roles": {c: _role(roles, c) for c in splits}, "concept_split": roles.to_dict(),
            "cells": fingerprints}


def _role(roles, concept: str) -> str:
    try:
        return roles.role(concept)
    except KeyError:
        return "unassigned"


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]


def _prepare_folder(out: Path, settings: dict[str, Any], cells: list[Cell], overwrite: bool, *,
                    mixed_sweeps: bool = False) -> None:
    """Refuse a folder of other settings (unless ``overwrite``: then delete what does not belong).
    ``mixed_sweeps`` is recorded beside the settings, not in them: a run resumes with either sweep path."""
    path = out / "bench.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8")).get("settings", {})
        except (OSError, json.JSONDecodeError):
            old = {"unreadable": True}
        diff = _differences(old, settings)
        if diff and not overwrite:
            raise BenchSettingsError(
                f"{out} holds a benchmark run with other settings or data (different: {', '.join(diff)}); "
                "choose another --output, or pass --overwrite to delete its results and start over")
    if overwrite:
        wanted = {str(c.path(out)): settings["cells"][c.key] for c in cells}
        for f in sorted((out / "cells").glob("*/*.json")) if (out / "cells").is_dir() else []:
            keep = False
            if str(f) in wanted:
                try:
                    keep = json.loads(f.read_text(encoding="utf-8")).get("fingerprint") == wanted[str(f)]
                except (OSError, json.JSONDecodeError):
                    keep = False
            if not keep:
                f.unlink()
        for f in sorted((out / "cells").glob("*/*.safetensors")) if (out / "cells").is_dir() else []:
            if stored_fingerprint(f) != wanted.get(str(f.with_suffix(".json"))):
                f.unlink()  # a kept update of other settings
        for f in sorted((out / "concepts").glob("*.json")) if (out / "concepts").is_dir() else []:
            f.unlink()
    atomic_write_json(path, {"settings": settings, "mixed_sweeps": bool(mixed_sweeps),
                             "written_by": f"easyedit-split {__version__}"})


def run_bench(cfg: BenchConfig) -> BenchResult:
    """Run (or resume) the benchmark; see the module docstring. Under ``torchrun`` each rank runs its share."""
    t0 = time.perf_counter()
    grid = _check_config(cfg)
    set_threads(cfg.threads)
    files, roles, source = _select_concepts(cfg)
    splits = {c: split_pairs(c, load_concept_pairs(p), n_train=cfg.n_train, n_val=cfg.n_val, n_test=cfg.n_test,
                             seed=cfg.seed) for c, p in files.items()}
    setup = CellSetup(model_id=cfg.model or "smollm2", dtype=cfg.dtype, grid=grid, seed=cfg.seed,
                      matched_targets=tuple(float(t) for t in cfg.matched_accuracy), n_boot=cfg.n_boot,
                      fit_boot=cfg.fit_boot, hparams_dir=Path(cfg.hparams_dir) if cfg.hparams_dir else None,
                      overrides=cfg.overrides, layer=cfg.layer, prompt_template=cfg.prompt_template)
    cells = plan_cells(list(splits), cfg.methods, cfg.forms)
    cell_settings = {c.key: setup.settings(c, splits[c.concept]) for c in cells}  # every YAML read before any work
    fingerprints = {k: digest(v) for k, v in cell_settings.items()}
    settings = _bench_settings(cfg, grid, setup, splits, cells, roles, source, fingerprints)
    out = Path(cfg.output_dir or f"runs/bench-{time.strftime('%Y%m%d-%H%M%S')}")
    # the process group only (share=False): each rank runs its own cells, with rank-local sweeps and training
    with distributed(share=False, timeout_s=BARRIER_TIMEOUT_S) as ctx:
        device = str(ctx.device(None if cfg.device in (None, "", "auto") else cfg.device))
        refusal = None  # (error class name, message) from rank 0, so every rank stops alike
        if ctx.is_main:
            try:
                check_writable(out, what="output folder (--output)")
                _prepare_folder(out, settings, cells, cfg.overwrite, mixed_sweeps=cfg.mixed_sweeps)
            except OutputError as exc:
                refusal = (type(exc).__name__, str(exc))
        refusal = ctx.gather(refusal)[0]  # rank 0's
        if refusal is not None:
            raise _REFUSALS.get(refusal[0], OutputError)(refusal[1])
        lock = output_lock(out, what="output folder (--output)") if not ctx.enabled else _no_lock()
        with lock:
            ran, reused = ([], []) if cfg.report_only else _run_cells(cfg, ctx, device, out, setup, splits, cells,
                                                                      cell_settings, fingerprints)
            ctx.barrier()
            results = None
            if ctx.is_main:
                from easyedit_split.bench.report import write_concept_files, write_report

                records = write_concept_files(out, cells, fingerprints, splits, roles, setup)
                results = write_report(out, cfg, {**settings, "mixed_sweeps": cfg.mixed_sweeps}, records, roles,
                                       seconds=time.perf_counter() - t0, plots=cfg.plots)
            ctx.barrier()
    return BenchResult(out, results, ran, reused, time.perf_counter() - t0)


_REFUSALS: dict[str, type[OutputError]] = {"BenchSettingsError": BenchSettingsError, "OutputError": OutputError}


class _no_lock:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _run_cells(cfg: BenchConfig, ctx: DistContext, device: str, out: Path, setup: CellSetup,
               splits: dict[str, ConceptSplit], cells: Sequence[Cell], cell_settings: dict[str, dict[str, Any]],
               fingerprints: dict[str, str]) -> tuple[list[str], list[str]]:
    # mixed sweeps need every cell of a concept on one rank: whole concepts are assigned, else single cells
    mine = assigned_by_concept(cells, ctx) if cfg.mixed_sweeps else assigned(cells, ctx)
    todo = [c for c in mine if read_cell(c, out, fingerprints[c.key]) is None]
    reused = [c.key for c in mine if c not in todo]
    logger.info("rank %d: %d cell(s) assigned, %d already done, %d to run", ctx.rank, len(mine), len(reused),
                len(todo))
    ran: list[str] = []
    if not todo:
        return ran, reused
    from easyedit_split.core.models import load_model

    model, tok = load_model(cfg.model, dtype=cfg.dtype, device=device)
    from easyedit_split.base.progress import progress as progress_bar

    bar = progress_bar(total=len(todo), desc=f"bench cells (rank {ctx.rank})" if ctx.enabled else "bench cells",
                       unit="cell", enabled=cfg.progress)
    kill_at = os.environ.get(KILL_AT_ENV)

    def kill_point(cell: Cell) -> None:
        if kill_at == cell.key:  # a test of resuming: die as a killed process would, before this cell
            os.kill(os.getpid(), signal.SIGKILL)

    def finished(record: dict[str, Any], cell: Cell) -> None:
        ran.append(cell.key)
        chosen = record.get("chosen", {})
        logger.info("%s: %s, accuracy %.3f at m = %s (unsteered %.3f), %.1f s", cell.key, record["status"],
                    chosen.get("accuracy", float("nan")), chosen.get("m"),
                    record.get("unsteered", {}).get("accuracy", float("nan")), record["seconds"])
        if bar is not None:
            bar.update(1)

    try:
        if cfg.mixed_sweeps:
            from easyedit_split.bench.mixed import run_concept_mixed

            by_concept: dict[str, list[Cell]] = {}
            for cell in todo:
                by_concept.setdefault(cell.concept, []).append(cell)
            for concept, group in by_concept.items():
                run_concept_mixed(setup, group, splits[concept], model, tok, settings=cell_settings, out=out,
                                  rank=ctx.rank, before_cell=kill_point, after_cell=finished)
        else:
            for cell in todo:
                kill_point(cell)
                record = run_cell(setup, cell, splits[cell.concept], model, tok, settings=cell_settings[cell.key],
                                  out=out, rank=ctx.rank)
                finished(record, cell)
    finally:
        if bar is not None:
            bar.close()
    return ran, reused
