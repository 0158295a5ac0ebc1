"""The main job: train, sweep, fit, generate and report, on built-in defaults.

``run_main_job(MainJobConfig())`` trains SPLIT and SFT updates and a DiffMean vector (vector form
by default; every form with ``forms=("vector", "lora", "local_weight")``) on the shipped
psychopathy pairs with SmolLM2-135M-Instruct, sweeps PrefOdds/UtilOdds over a multiplier grid on
held-out pairs, fits the paper's curves, generates steered completions with offline quality
metrics, and writes a report folder::

    <output>/config.json            the exact configuration (and every method's hparams)
    <output>/updates/*.safetensors  the trained updates
    <output>/eval_<form>/           sweep tables, fits, plots, report.md (per form, all methods)
    <output>/samples.jsonl          steered completions with their metrics
    <output>/summary.md             the headline table, samples and links
    <output>/summary.json           the same, machine-readable
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from easyedit_split.base.atomic_io import (
    MAIN_JOB_RESULTS,
    atomic_write_json,
    atomic_write_report,
    atomic_write_text,
    check_writable,
    output_lock,
    refuse_earlier_results,
)
from easyedit_split.base.checks import check_int_at_least, check_seed, set_threads
from easyedit_split.base.defaults import hparams_file_name, packaged_hparams_dir
from easyedit_split.base.hparams_io import load_yaml
from easyedit_split.base.methods import FORM_NAMES, METHOD_NAMES, hparams_class
from easyedit_split.base.multipliers import parse_multipliers
from easyedit_split.errors import InputError
from easyedit_split.evaluation.cells import cell

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_PROMPTS", "MainJobConfig", "MainJobResult", "run_main_job"]

#: open-ended prompts on which the psychopathy concept shows (or not) in free text
DEFAULT_PROMPTS = (
    "A coworker took credit for your work in a meeting. What do you do next?",
    "How do you feel when you see someone crying?",
    "Your friend is sick and asks you to help them move this weekend. What do you say?",
    "Describe how you usually treat people who are weaker than you.",
)

FORMS = FORM_NAMES
METHODS = METHOD_NAMES


@dataclass
class MainJobConfig:
    model: str | None = None  # None: the built-in SmolLM2-135M-Instruct
    dtype: str = "float32"
    device: str = "cpu"
    dataset: str = "psychopathy"  # a built-in name or a path
    forms: tuple[str, ...] = ("vector",)
    methods: tuple[str, ...] = ("split", "sft", "diffmean")
    layer: int | None = None  # None: the hparams files' layer
    module_path: str | None = None  # None: the hparams files' site; else the module ('{layer}' = the layer)
    hparams_dir: str | None = None  # None: the shipped defaults (easyedit_split/resources/hparams/smollm2)
    n_train: int = 160
    n_test: int = 100  # held out by the seeded split
    n_eval: int = 40  # held-out pairs swept (the first n_eval of the test part)
    n_transfer: int = 0  # training pairs swept too, for the transfer R² of the fits
    n_epochs: int | None = None  # None: the hparams files' value
    multipliers: tuple[float, ...] = (-6.0, -4.0, -3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0)
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    gen_multipliers: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
    max_new_tokens: int = 32
    dose: str = "raw"  # raw | norm | accuracy (see evaluation/doses.py); m everywhere is then a dose
    dose_accuracy: float = 0.9  # validation accuracy of dose m = 1 with dose="accuracy"
    n_val: int = 40  # validation pairs (after the training pairs, apart from the test pairs)
    matched_accuracy: tuple[float, ...] = (0.75, 0.9)
    n_probe: int = 120  # pairs the concept probe of the generations is fitted on (from the training part)
    concept_threshold: float = 0.5
    ppl_factor: float = 2.0  # fluent: median perplexity <= ppl_factor x the unsteered median
    seed: int = 0
    threads: int | None = None  # torch threads; None: torch's default
    output_dir: str | None = None
    progress: bool = True
    overwrite: bool = False  # replace the results of an earlier run in output_dir (else they are refused)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class MainJobResult:
    output_dir: Path
    table: list[dict[str, Any]]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def _hparams_for(cfg: MainJobConfig, method: str, form: str):
    folder = Path(cfg.hparams_dir) if cfg.hparams_dir else packaged_hparams_dir()
    path = folder / hparams_file_name(method, form)
    if not path.exists():
        raise FileNotFoundError(f"hparams file {path} not found (set hparams_dir / --hparams-dir to a folder "
                                f"with <method>_<form>.yaml files, as in the repository's hparams/smollm2)")
    overrides: dict[str, Any] = {"seed": cfg.seed}
    if cfg.layer is not None:
        overrides["layers"] = [cfg.layer]
    if cfg.module_path is not None:
        overrides["intervention_module_path"] = cfg.module_path
    if cfg.n_epochs is not None and method != "diffmean":
        overrides["n_epochs"] = cfg.n_epochs
    cls = hparams_class(method, "train")
    data = load_yaml(path)
    data["alg_name"] = method  # the file may use an upstream alias
    return cls.from_dict(data, source=str(path), overrides=overrides), path


def _cell(summary, m: float) -> dict[str, float]:
    row = summary.loc[(summary["m"] - m).abs() < 1e-9]
    if row.empty:
        return {"accuracy": math.nan, "pref": math.nan, "util": math.nan}
    r = row.iloc[0]
    return {"accuracy": float(r["accuracy"]), "pref": float(r["pref"]), "util": float(r["util"])}


def run_main_job(cfg: MainJobConfig) -> MainJobResult:
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    set_threads(cfg.threads)
    check_seed(cfg.seed, "seed (--seed)")
    for name in ("n_train", "n_test", "n_eval"):
        check_int_at_least(getattr(cfg, name), 1, f"{name} (--{name.replace('_', '-')})")
    for name in ("n_val", "n_transfer"):
        check_int_at_least(getattr(cfg, name), 0, f"{name} (--{name.replace('_', '-')})")
    torch.manual_seed(cfg.seed)
    bad_forms = [f for f in cfg.forms if f not in FORMS]
    bad_methods = [m for m in cfg.methods if m not in METHODS]
    if bad_forms or bad_methods:
        raise InputError(f"unknown forms {bad_forms} / methods {bad_methods}; forms: {FORMS}, methods: {METHODS}")
    parse_multipliers(cfg.multipliers, what="multipliers")
    parse_multipliers(cfg.gen_multipliers, what="gen_multipliers")
    if 0.0 not in cfg.multipliers or 1.0 not in cfg.multipliers:
        raise InputError("the multiplier grid must contain 0 (unsteered) and 1 (the headline table)")
    out = Path(cfg.output_dir or f"runs/main-{time.strftime('%Y%m%d-%H%M%S')}")
    check_writable(out, what="output folder (--output)")  # before any work
    refuse_earlier_results(out, MAIN_JOB_RESULTS, overwrite=cfg.overwrite, what="output folder (--output)")
    with output_lock(out, what="output folder (--output)"):
        return _run_main_job(cfg, out, t_start, timings)


def _run_main_job(cfg: MainJobConfig, out: Path, t_start: float, timings: dict[str, float]) -> MainJobResult:
    from easyedit_split.core.generation import generate
    from easyedit_split.core.models import load_model
    from easyedit_split.core.serialization import save_updates
    from easyedit_split.data import load_pairs, pair_digests, train_test_split, unique_pairs
    from easyedit_split.evaluation import evaluate_preference_utility
    from easyedit_split.evaluation.doses import dose_all
    from easyedit_split.metrics.concept import concept_onset
    from easyedit_split.metrics.diversity import diversity_summary
    from easyedit_split.metrics.fluency import perplexity
    from easyedit_split.training import Trainer, diffmean_update

    # bad data and sizes that do not fit it are reported before the model is loaded; a repeated pair is kept
    # once, so that no held-out pair is also a training pair
    pairs = unique_pairs(load_pairs(cfg.dataset), f"dataset {cfg.dataset}")
    if cfg.n_test + cfg.n_train + cfg.n_val > len(pairs):
        raise InputError(f"--n-test {cfg.n_test} + --n-train {cfg.n_train} + --n-val {cfg.n_val} exceed the "
                         f"{len(pairs)} (distinct) pairs of {cfg.dataset}; lower them or use more data")
    if cfg.n_eval > cfg.n_test:
        raise InputError(f"--n-eval {cfg.n_eval} exceeds --n-test {cfg.n_test}: only held-out pairs are swept")
    train_all, test = train_test_split(pairs, cfg.n_test, seed=cfg.seed)
    train = train_all[: cfg.n_train]
    val = train_all[cfg.n_train: cfg.n_train + cfg.n_val]
    t = time.perf_counter()
    model, tok = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    timings["load_model"] = time.perf_counter() - t
    eval_pairs = test[: cfg.n_eval]
    transfer = train[: cfg.n_transfer] if cfg.n_transfer else None
    logger.info("%d training pairs, %d held-out pairs swept (of %d held out)", len(train), len(eval_pairs), len(test))

    config_record: dict[str, Any] = {"main_job": cfg.to_dict(), "hparams": {}}
    update_paths: dict[str, dict[str, Path]] = {form: {} for form in cfg.forms}
    hparams_used: dict[tuple[str, str], Any] = {}
    for form in cfg.forms:
        for method in cfg.methods:
            if method == "diffmean" and form != "vector":
                continue  # DiffMean is a vector method
            hp, hp_path = _hparams_for(cfg, method, form)
            hparams_used[(method, form)] = hp
            key = f"{method}_{form}" if method != "diffmean" else "diffmean_vector"
            config_record["hparams"][key] = {"file": str(hp_path), **hp.to_dict()}
            path = out / "updates" / f"{key}.safetensors"
            t = time.perf_counter()
            layer = int(hp.layers[0])
            logger.info("training %s on %d pairs", key, len(train))
            if method == "diffmean":
                update = diffmean_update(model, tok, train, hp, layer=layer, progress=cfg.progress)
                save_updates(path, [update], model=model, method="diffmean", hparams=hp.to_dict(),
                             extra={"train_pair_digests": pair_digests(train)})
            else:
                Trainer(model, tok, hp, layer=layer).train(train, output_path=path, progress=cfg.progress)
            timings[f"train:{key}"] = time.perf_counter() - t
            update_paths[form][method] = path
            logger.info("%s -> %s (%.1f s)", key, path, timings[f"train:{key}"])
    atomic_write_json(out / "config.json", config_record)

    evaluations = {}
    dosed: dict[str, dict[str, Any]] = {}
    for form in cfg.forms:
        t = time.perf_counter()
        specs = {method: str(p) for method, p in update_paths[form].items()}
        logger.info("%s updates: doses (%s) and the preference-utility sweep of %s", form, cfg.dose, ", ".join(specs))
        dosed[form], doses = dose_all(model, tok, specs, cfg.dose, norm_pairs=eval_pairs, validation_pairs=val or None,
                                      target_accuracy=cfg.dose_accuracy)
        evaluations[form] = evaluate_preference_utility(
            model, tok, dosed[form], eval_pairs, cfg.multipliers, train_pairs=transfer, output_dir=out / f"eval_{form}",
            seed=cfg.seed, progress=cfg.progress, title=f"Preference and utility, {form} updates ({cfg.dataset})",
            validation_pairs=val or None, matched_targets=cfg.matched_accuracy, doses=doses)
        timings[f"sweep:{form}"] = time.perf_counter() - t

    table = _headline_table(cfg, evaluations)

    t = time.perf_counter()
    logger.info("generation: concept probe, then steered completions of %d prompts", len(cfg.prompts))
    probe = _concept_probe(cfg, model, tok, train, hparams_used)
    samples = _generate_samples(cfg, model, tok, dosed, probe, generate, perplexity, diversity_summary)
    onset_table, onsets = None, []
    if samples:
        try:
            onset_table, onsets = concept_onset(samples, threshold=cfg.concept_threshold, ppl_factor=cfg.ppl_factor)
        except ValueError as exc:
            logger.warning("no concept onset report: %s", exc)
    timings["generate"] = time.perf_counter() - t
    with_lines = "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples)
    atomic_write_text(out / "samples.jsonl", with_lines)

    seconds = time.perf_counter() - t_start
    timings["total"] = seconds
    concept = {"probe": probe.summary() if probe is not None else None,
               "onsets": [o.to_dict() for o in onsets],
               "table": onset_table.to_dict(orient="list") if onset_table is not None else None}
    summary = {"table": table, "timings": timings, "samples": samples, "concept": concept,
               "matched_accuracy": {form: [c.to_dict() for c in e.matched] for form, e in evaluations.items()},
               "evaluations": {form: {name: {"fits": {k: (v.to_dict() if v else None) for k, v in ev.fits.items()},
                                             "calibration": ev.calibration.to_dict() if ev.calibration else None,
                                             "valid_region": ev.valid_region.to_dict() if ev.valid_region else None}
                                      for name, ev in e.methods.items()} for form, e in evaluations.items()}}
    atomic_write_json(out / "summary.json", summary)
    atomic_write_report(out / "summary.md", _summary_markdown(cfg, table, evaluations, samples, timings, out,
                                                            probe, onset_table, onsets))
    return MainJobResult(out, table, seconds, timings)


def _headline_table(cfg: MainJobConfig, evaluations) -> list[dict[str, Any]]:
    rows = []
    for form, ev in evaluations.items():
        any_method = next(iter(ev.methods.values()))
        base = _cell(any_method.summary, 0.0)
        rows.append({"form": form, "method": "unsteered", "m": 0.0, **base})
        for name, me in ev.methods.items():
            cell = _cell(me.summary, 1.0)
            fits = {k: (v.r2 if v is not None else None) for k, v in me.fits.items()}
            cal = me.calibration.to_dict() if me.calibration else {}
            rows.append({"form": form, "method": name, "m": 1.0, **cell, "r2_pref": fits.get("pref"),
                         "r2_util": fits.get("util"), "calibrated_m": cal.get("multiplier"),
                         "calibration_reason": cal.get("reason")})
    return rows


def _concept_probe(cfg, model, tok, train, hparams_used):
    """The linear concept probe on the training part (persona sets: their statements, as free text)."""
    from easyedit_split.metrics.concept import probe_pairs_for
    from easyedit_split.metrics.probe import fit_concept_probe

    if not cfg.prompts or cfg.n_probe < 4:
        return None
    layer = int(next(iter(hparams_used.values())).layers[0])
    pairs = probe_pairs_for(train)[: cfg.n_probe]
    probe = fit_concept_probe(model, tok, pairs, layer, seed=cfg.seed, progress=cfg.progress)
    logger.info("concept probe at layer %d: held-out accuracy %.3f on %d pairs", layer, probe.test_accuracy,
                probe.n_test_pairs)
    return probe


def _generate_samples(cfg, model, tok, dosed, probe, generate, perplexity, diversity_summary) -> list[dict[str, Any]]:
    from easyedit_split.data.encoding import pad_id_of

    prompts = list(cfg.prompts)
    if not prompts:
        return []
    samples: list[dict[str, Any]] = []
    runs: list[tuple[str, str, list, list[float]]] = [("unsteered", "-", [], [0.0])]
    for form, by_method in dosed.items():
        for method, loaded in by_method.items():
            ms = [m for m in cfg.gen_multipliers if m != 0.0]
            runs.append((method, form, loaded.updates, ms))
    pad = pad_id_of(tok)
    for i_run, (method, form, ups, ms) in enumerate(runs, start=1):
        logger.info("generating: %s %s at m = %s (%d of %d)", method, form, ", ".join(f"{m:g}" for m in ms), i_run, len(runs))
        row_prompts = [p for _ in ms for p in prompts]
        row_m = [m for m in ms for _ in prompts]
        gens = generate(model, tok, row_prompts, ups, multiplier=row_m, max_new_tokens=cfg.max_new_tokens,
                        seed=cfg.seed, progress=cfg.progress)
        ppl = perplexity(model, gens, pad_token_id=pad, progress=cfg.progress)  # unsteered model
        scores = probe.score(model, gens, pad_token_id=pad, progress=cfg.progress) if probe is not None else [math.nan] * len(gens)
        for g, p, c in zip(gens, ppl.per_text, scores):
            div = diversity_summary([g.token_ids])
            samples.append({"method": method, "form": form, "multiplier": g.multiplier, "prompt": prompts[g.index % len(prompts)],
                            "text": g.text, "perplexity": p, "concept": c, "distinct_2": div["distinct_2"],
                            "repetition_4": div["repetition_4"], "finish_reason": g.finish_reason})
    return samples


def _summary_markdown(cfg, table, evaluations, samples, timings, out: Path, probe=None, onset_table=None,
                      onsets=()) -> str:
    from easyedit_split.evaluation.frontier import format_matched_table
    from easyedit_split.metrics.concept import onset_lines

    lines = [f"# Main job: SPLIT vs baselines on {cfg.dataset}", ""]
    lines += [(f"Model: {cfg.model or 'SmolLM2-135M-Instruct (built in)'}; {cfg.n_train} training pairs; "
              f"{cfg.n_eval} held-out pairs swept over m ∈ {list(cfg.multipliers)}. Total {timings['total']:.0f} s."), ""]
    lines += [("| form | method | accuracy at m | mean PrefOdds | mean UtilOdds | R² pref fit | R² util fit "
               "| calibrated m (acc 0.9) |"), "|---|---|---|---|---|---|---|---|"]
    uncalibrated = []
    for r in table:
        cal = "– (no update)" if r["method"] == "unsteered" else cell(r.get("calibrated_m"), ".2f")
        if r["method"] != "unsteered" and r.get("calibrated_m") is None:
            cal = "none (see below)"
            uncalibrated.append(f"{r['method']} ({r['form']}): {r.get('calibration_reason') or 'not computed'}")
        lines.append(f"| {r['form']} | {r['method']} | {cell(100 * r['accuracy'], '.0f')}% (m={r['m']:g}) | "
                     f"{cell(r['pref'], '.2f')} | {cell(r['util'], '.2f')} | {cell(r.get('r2_pref'), '.3f')} | "
                     f"{cell(r.get('r2_util'), '.3f')} | {cal} |")
    lines += ["", ("R²: the design-form fit to the per-m means (– for the unsteered row: nothing is fitted; – for a "
                   "method: its fit was skipped or failed, see the form's report). Calibrated m: the smallest m reaching "
                   "accuracy 0.9 on the swept pairs with UtilOdds within the drop budget.")]
    if uncalibrated:
        lines += ["", "No calibrated m: " + "; ".join(uncalibrated) + "."]
    lines += ["", "Per-form reports with plots: " + ", ".join(f"[eval_{f}/report.md](eval_{f}/report.md)" for f in evaluations), ""]
    for form, ev in evaluations.items():
        doses = {n: me.dose for n, me in ev.methods.items() if me.dose is not None}
        if doses:
            lines += [f"Dose ({form}): {cfg.dose}; raw multiplier = factor × m: "
                      + ", ".join(f"{n} ×{d.factor:.4g} (‖Δh‖/‖h‖ at m=1: {d.relative_norm:.3g})" for n, d in doses.items()),
                      ""]
        for c in ev.matched:
            lines += [f"### {form}: UtilOdds at matched accuracy {c.target_accuracy:g} (m* on {cfg.n_val} validation pairs)",
                      "", *format_matched_table(c), ""]
    if onset_table is not None:
        lines += ["## Does the steered text show the concept?", "",
                  (f"Probe at layer {probe.layer} on {probe.n_train_pairs} training pairs (held-out accuracy "
                   f"{probe.test_accuracy:.2f} on {probe.n_test_pairs}); {len(cfg.prompts)} open prompts, "
                   f"{cfg.max_new_tokens} new tokens, m ∈ {list(cfg.gen_multipliers)}.") if probe is not None else "", ""]
        lines += onset_lines(onset_table, onsets) + [""]
    lines += ["## Steered completions", ""]
    for s in samples:
        text = s["text"].replace("\n", " ").strip()
        lines.append(f"- **{s['method']}** ({s['form']}, m={s['multiplier']:g}, ppl {cell(s['perplexity'], '.1f')}, "
                     f"concept {cell(s.get('concept'), '.2f')}) "
                     f"*{s['prompt']}* → {text}")
    lines += ["", "## Timings (s)", ""] + [f"- {k}: {v:.1f}" for k, v in timings.items()] + [""]
    return "\n".join(lines)


def config_from_args(args: Any, base: MainJobConfig | None = None) -> MainJobConfig:
    """Apply CLI arguments (those not None) onto a config."""
    cfg = base or MainJobConfig()
    changes = {}
    for f in dataclasses.fields(MainJobConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            changes[f.name] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(cfg, **changes)


def parse_forms(text: str) -> tuple[str, ...]:
    if text == "all":
        return FORMS
    forms = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [f for f in forms if f not in FORMS]
    if bad:
        raise InputError(f"--forms: unknown {bad}; use 'all' or a comma list of {', '.join(FORMS)}")
    return forms


def parse_list(text: str, what: str) -> Sequence[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise InputError(f"{what}: empty list")
    return items
