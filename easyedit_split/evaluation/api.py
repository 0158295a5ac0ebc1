"""``evaluate_preference_utility``: sweep, fits, derived quantities, manifold, plots and report.

Registered as the evaluator ``"preference_utility"`` (``easyedit_split.easyedit.registry.get_evaluator``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from easyedit_split.adapters.artefacts import LoadedUpdates, load_artefact, recorded_training_pairs
from easyedit_split.base.atomic_io import atomic_write_json, check_distinct, check_writable
from easyedit_split.base.multipliers import parse_multipliers
from easyedit_split.data.encoding import check_context_length
from easyedit_split.data.pairs import pair_digests
from easyedit_split.errors import InputError
from easyedit_split.evaluation.curves import FORMS, CurveFit, transfer_r2
from easyedit_split.evaluation.derived import calibrate, valid_region
from easyedit_split.evaluation.fit_bootstrap import bootstrap_fit
from easyedit_split.evaluation.fitting import fit_curve
from easyedit_split.evaluation.frontier import (
    PerExample,
    curve_points,
    matched_accuracy,
    per_example,
)
from easyedit_split.evaluation.logodds import summarize
from easyedit_split.evaluation.manifold import manifold_distance
from easyedit_split.evaluation.results import EvaluationResult, MethodEvaluation, fit_key
from easyedit_split.evaluation.sweep import encode_for_sweep, sweep, write_table

logger = logging.getLogger(__name__)

__all__ = ["EvaluationResult", "MethodEvaluation", "evaluate_preference_utility"]


def _per_example(table: pd.DataFrame, column: str, grid: Sequence[float]) -> np.ndarray:
    """``[n_examples, len(grid)]`` values of ``column`` (rows: examples, columns: multipliers)."""
    wide = table.pivot(index="example_id", columns="m", values=column)
    return wide.reindex(columns=list(grid)).to_numpy(dtype=np.float64)


def fit_summary(summary: pd.DataFrame, name: str, table: pd.DataFrame | None = None, reduction: str = "sum",
          n_boot: int = 0, seed: int = 0) -> dict[str, CurveFit]:
    """Both forms of both curves on the per-m means; with ``table`` and ``n_boot``, bootstrap intervals."""
    m = summary["m"].to_numpy()
    sfx = "" if reduction == "sum" else "_mean"
    out: dict[str, CurveFit] = {}
    for kind in ("pref", "util"):
        samples = None
        if table is not None and n_boot > 0:
            samples = _per_example(table, f"{kind}_odds{sfx}", m)
            if np.isnan(samples).any():
                logger.warning("%s: missing (example, m) rows; no bootstrap intervals for %s", name, kind)
                samples = None
            elif samples.shape[0] < 2:  # resampling one pair gives that pair back: no interval to speak of
                logger.warning("%s: %d pair(s) swept; no bootstrap intervals for %s (they need at least 2 pairs)",
                               name, samples.shape[0], kind)
                samples = None
        for form in FORMS:
            fit = fit_curve(kind, m, summary[kind].to_numpy(), form=form)
            if samples is not None:
                fit = bootstrap_fit(fit, m, samples, n_boot=n_boot, seed=seed)
            out[fit_key(kind, form)] = fit
    return out


def _fit_notes(fits: dict[str, CurveFit | None], where: str) -> list[str]:
    notes = []
    for fit in fits.values():
        if fit is not None and fit.status != "ok":
            notes.append(f"{where} {fit.label} fit {fit.status}: {fit.message}")
    return notes


def _derived(ev: MethodEvaluation, ref_summary: pd.DataFrame, ref_fits: dict[str, CurveFit | None], *,
             derived_from: str, delta: float, target_pref: float | None, target_accuracy: float | None,
             max_util_drop: float) -> None:
    """Valid region and calibration from the measured means (or converged fits when asked); flags in ``ev.notes``."""
    m_ref = ref_summary["m"].to_numpy()
    util = ref_summary["util"].to_numpy()
    use: dict[str, CurveFit | None] = {"pref": None, "util": None}
    if derived_from == "fit":
        for key in use:
            f = ref_fits.get(key)
            if f is not None and f.success:
                use[key] = f
            else:
                why = "missing" if f is None else f"{f.status}: {f.message}"
                ev.notes.append(f"derived quantities use the measured {key} means: the {key} fit is {why}")
    try:
        ev.valid_region_means = valid_region(m_ref, util, delta=delta, skip_nan=True)
        ev.valid_region = (valid_region(m_ref, util, fit=use["util"], delta=delta, skip_nan=True)
                           if use["util"] is not None else ev.valid_region_means)
        ev.calibration = calibrate(
            m_ref, pref=ref_summary["pref"].to_numpy(), util=util, accuracy=ref_summary["accuracy"].to_numpy(),
            pref_fit=use["pref"], util_fit=use["util"], target_pref=target_pref, target_accuracy=target_accuracy,
            max_util_drop=max_util_drop, skip_nan=True)
    except ValueError as exc:
        logger.warning("%s: derived quantities unavailable: %s", ev.name, exc)
        ev.notes.append(f"derived quantities unavailable: {exc}")
        return
    skipped = sorted(set(ev.valid_region.skipped_m) | set(ev.calibration.skipped_m))
    if skipped:
        ev.notes.append("derived quantities interpolate across multipliers whose mean is NaN: m = "
                        + ", ".join(f"{v:g}" for v in skipped))


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "update"


def _warn_training_overlap(loaded: LoadedUpdates, pairs: Sequence, name: str) -> None:
    """Warn when evaluation pairs are among the pairs ``loaded`` records as its training pairs (the
    command line leaves those out of its split; here the caller chose ``pairs``)."""
    trained = recorded_training_pairs(loaded)
    if not trained or not pairs or not hasattr(pairs[0], "question"):
        return
    overlap = sum(d in trained for d in pair_digests(pairs))
    if overlap:
        logger.warning("%s: %d of the %d evaluation pairs are pairs it was trained on; its curves on them are not "
                       "held-out results", name or loaded.source or "update", overlap, len(pairs))


def evaluate_preference_utility(
    model: nn.Module,
    tokenizer: Any,
    updates: Any,
    pairs: Sequence,
    multipliers: str | Sequence[float | str],
    *,
    train_pairs: Sequence | None = None,
    output_dir: str | os.PathLike | None = None,
    reduction: str = "sum",
    delta: float = 1.0,
    target_pref: float | None = None,
    target_accuracy: float | None = None,
    max_util_drop: float = 1.0,
    manifold: bool = False,
    manifold_pairs: int = 32,
    manifold_variance: float = 0.9,
    manifold_positions: str = "all",
    batch_rows: int = 128,
    use_prefix_cache: bool = True,
    n_boot: int = 1000,
    fit_boot: int = 30,
    derived_from: str = "means",
    seed: int = 0,
    progress: bool = True,
    title: str | None = None,
    table_format: str = "csv",
    encode_kwargs: Mapping[str, Any] | None = None,
    validation_pairs: Sequence | None = None,
    matched_targets: Sequence[float] = (0.75, 0.9),
    reference: str | None = None,
    doses: Mapping[str, Any] | None = None,
) -> EvaluationResult:
    """Preference–utility evaluation of one update (or several: pass ``{name: spec}``).

    ``updates``: anything :func:`~easyedit_split.adapters.artefacts.load_artefact` accepts (loaded updates, a
    path, ``diffmean@L`` built from ``train_pairs``), or a mapping name → such a spec.
    Sweeps ``pairs`` over ``multipliers``; fits PrefOdds/UtilOdds curves on the per-m means in both
    forms of docs/design.md §3 (``fits["pref"]``, ``fits["util"]``: design form;
    ``fits["pref_per_side"]``, ``fits["util_per_side"]``: per-side form), with bootstrap intervals on
    R² and parameters from ``fit_boot`` resamples of the pairs (0: none); with ``train_pairs``, also
    sweeps and fits those and reports the transfer R² of the training fits on ``pairs``. Derived
    quantities (valid region for ``delta``, calibration to ``target_pref`` or ``target_accuracy`` —
    default accuracy 0.9 — within ``max_util_drop``) come from the measured means (of the training
    pairs when given) unless ``derived_from="fit"``, which uses the design-form fits where they
    converged; failed or skipped fits and NaN means are listed in ``notes`` and the report. ``manifold=True`` adds the manifold distance on the first ``manifold_pairs`` pairs.
    Every method gets its accuracy–utility frontier; for each of ``matched_targets`` the methods are
    compared at matched accuracy (:func:`~.frontier.matched_accuracy`), with ``m*`` found on
    ``validation_pairs`` when given (else on ``pairs``), differenced against ``reference`` (default:
    ``"split"`` when present). ``doses`` (name → :class:`~.doses.Dose`): how the updates were
    rescaled beforehand, for the report.
    With ``output_dir``: tables, ``results.json``, PNG plots and ``report.md``, each written atomically.
    """
    from easyedit_split.core.models import check_tokenizer_fits

    if reduction not in ("sum", "mean"):
        raise InputError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    check_tokenizer_fits(model, tokenizer, source="evaluate_preference_utility()")
    if derived_from not in ("means", "fit"):
        raise InputError(f"derived_from must be 'means' or 'fit', got {derived_from!r}")
    if target_pref is None and target_accuracy is None:
        target_accuracy = 0.9
    specs: Mapping[str, Any] = updates if isinstance(updates, Mapping) else {"": updates}
    grid = sorted(parse_multipliers(multipliers))
    if 0.0 not in grid:
        raise InputError("the multiplier grid must contain 0 (the unsteered reference)")
    if len(grid) < 2:
        raise InputError("the multiplier grid holds only 0: nothing is steered; add the multipliers to sweep "
                         "(e.g. -2:2:9)")
    out_dir = Path(output_dir) if output_dir is not None else None
    if out_dir is not None:  # before any work: the location, and names that would write the same table
        check_writable(out_dir, what="output folder")
        check_distinct({name: out_dir / f"sweep_{slug(name)}.{table_format}" for name in specs if name},
                       what="update name")
    methods: dict[str, MethodEvaluation] = {}
    per_eval: dict[str, PerExample] = {}  # the evaluation tables as matrices (frontier and matched accuracy)
    files: dict[str, str] = {}
    for given_name, spec in specs.items():
        loaded: LoadedUpdates = load_artefact(spec, model, tokenizer=tokenizer, train_pairs=train_pairs)
        _warn_training_overlap(loaded, pairs, given_name)
        # render prompts as the update was trained (chat template, system prompt) unless told otherwise
        kw = dict(encode_kwargs) if encode_kwargs is not None else loaded.rendering()
        eval_enc = encode_for_sweep(tokenizer, pairs, **kw)
        # every pair set is encoded and checked against the context before any sweep runs
        train_enc = encode_for_sweep(tokenizer, train_pairs, **kw) if train_pairs is not None else None
        val_enc = encode_for_sweep(tokenizer, validation_pairs, **kw) if validation_pairs is not None else None
        check_context_length(eval_enc + (train_enc or []) + (val_enc or []), model)
        name = given_name or (loaded.method if loaded.method != "unknown" else "update")
        ups = loaded.updates
        # rows are appended to a partial file as they complete: a failure keeps them, a rerun resumes
        partial = out_dir / f".partial_sweep_{slug(name)}.jsonl" if out_dir is not None else None
        table = sweep(model, tokenizer, eval_enc, ups, grid, batch_rows=batch_rows, method=name,
                      use_prefix_cache=use_prefix_cache, progress=progress, partial=partial)
        summary = summarize(table, reduction=reduction, n_boot=n_boot, seed=seed)
        util_col = "util_odds" if reduction == "sum" else "util_odds_mean"
        ev = MethodEvaluation(name, loaded.source, loaded.kind, table, summary,
                              fit_summary(summary, name, table, reduction, n_boot=fit_boot, seed=seed),
                              util_infinite=int(np.isinf(table[util_col]).sum()))
        ev.notes += _fit_notes(ev.fits, "evaluation pairs:")
        if ev.util_infinite:
            logger.warning("%s: %d (pair, m) rows have UtilOdds = +inf (valid mass >= 1); left out of the means",
                           name, ev.util_infinite)
        if train_pairs is not None:
            tpartial = out_dir / f".partial_sweep_train_{slug(name)}.jsonl" if out_dir is not None else None
            ttable = sweep(model, tokenizer, train_enc, ups, grid,
                           batch_rows=batch_rows, method=name,
                           use_prefix_cache=use_prefix_cache, progress=progress, partial=tpartial)
            ev.train_summary = summarize(ttable, reduction=reduction, n_boot=n_boot, seed=seed)
            ev.train_fits = fit_summary(ev.train_summary, f"{name} (train)")
            ev.notes += _fit_notes(ev.train_fits, "training pairs:")
            for key, f in ev.train_fits.items():
                kind = f.kind
                ev.transfer_r2[key] = transfer_r2(f, summary["m"], summary[kind]) if f.success else None
            if out_dir is not None:
                files[f"train_table:{name}"] = str(write_table(ttable, out_dir / f"sweep_train_{slug(name)}.{table_format}"))
                tpartial.unlink(missing_ok=True)
        ref_fits = ev.train_fits if ev.train_fits else ev.fits
        ref_summary = ev.train_summary if ev.train_summary is not None else summary
        _derived(ev, ref_summary, ref_fits, derived_from=derived_from, delta=delta, target_pref=target_pref,
                 target_accuracy=target_accuracy, max_util_drop=max_util_drop)
        if summary[["pref", "util"]].isna().any().any():
            bad = summary.loc[summary[["pref", "util"]].isna().any(axis=1), "m"].tolist()
            ev.notes.append("NaN means (no finite value) at m = " + ", ".join(f"{v:g}" for v in bad))
        per_eval[name] = per_example(table, reduction)
        ev.frontier = curve_points(per_eval[name])
        ev.dose = (doses or {}).get(name, (doses or {}).get(given_name))
        if validation_pairs is not None:
            ev.validation_table = sweep(model, tokenizer, val_enc, ups,
                                        grid, batch_rows=batch_rows, method=name, use_prefix_cache=use_prefix_cache,
                                        progress=progress)
        if manifold:
            sub = eval_enc[:manifold_pairs]
            ev.manifold = manifold_distance(model, tokenizer, sub, ups, grid, variance=manifold_variance,
                                            positions=manifold_positions, util_table=table, util_column=util_col,
                                            n_boot=n_boot, seed=seed)
        methods[name] = ev
        if out_dir is not None:
            files[f"table:{name}"] = str(write_table(table, out_dir / f"sweep_{slug(name)}.{table_format}"))
            partial.unlink(missing_ok=True)
    if reference is None and "split" in methods and len(methods) > 1:
        reference = "split"
    val = ({n: per_example(ev.validation_table, reduction) for n, ev in methods.items()}
           if validation_pairs is not None and matched_targets else None)
    matched = [matched_accuracy(per_eval, float(target), validation=val, reference=reference, n_boot=n_boot, seed=seed)
               for target in matched_targets]
    result = EvaluationResult(methods, grid, reduction, {
        "delta": delta, "target_pref": target_pref, "target_accuracy": target_accuracy,
        "max_util_drop": max_util_drop, "n_pairs": len(pairs), "n_train_pairs": len(train_pairs) if train_pairs else 0,
        "n_boot": n_boot, "fit_boot": fit_boot, "derived_from": derived_from, "seed": seed, "manifold": manifold, "manifold_pairs": manifold_pairs,
        "manifold_variance": manifold_variance, "manifold_positions": manifold_positions,
        "n_validation_pairs": len(validation_pairs) if validation_pairs is not None else 0,
        "matched_targets": [float(t) for t in matched_targets], "reference": reference,
    }, out_dir, files, matched)
    if out_dir is not None:
        from easyedit_split.evaluation.report import write_report

        write_report(result, out_dir, title=title)
        atomic_write_json(out_dir / "results.json", result.to_dict())
        result.files["results"] = str(out_dir / "results.json")
    return result
