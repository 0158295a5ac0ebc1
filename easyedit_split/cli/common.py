"""The vocabulary every command shares (model options, the help formatter, deprecated spellings) and the job
shared by ``sweep`` and ``compare`` (commands import this module, never each other)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from pathlib import Path

from easyedit_split.base.checks import (
    finite_float_arg,
    nonnegative_float_arg,
    nonnegative_int_arg,
    positive_int_arg,
    probability_arg,
    seed_arg,
    set_threads,
)
from easyedit_split.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["EVALUATION_FLAG_RULES", "HelpFormatter", "add_deprecated_alias", "add_evaluation_arguments",
           "add_model_arguments", "load_data", "run_evaluation"]

MODEL_HELP = "Hugging Face folder, cached hub id, .gguf file or built-in name (smollm2, gemma3-270m); default smollm2"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows every option's default (unless it is none, or the help already names it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default in (None, False, argparse.SUPPRESS) or "default" in text or "%(default)" in text
                or action.option_strings == [] and action.nargs in ("*", "+")):
            return text
        return f"{text} (default: %(default)s)"


def add_model_arguments(p: argparse.ArgumentParser, *, dtype: str | None = "float32", device: str | None = "cpu",
                        model_help: str = MODEL_HELP) -> None:
    """``--model``, ``--dtype``, ``--device``: the same names and meanings in every command."""
    p.add_argument("--model", default=None, help=model_help)
    p.add_argument("--dtype", default=dtype, help="float32 | bfloat16 | float16 (also fp32, bf16, fp16)"
                   + ("" if dtype else "; default: the hparams files'"))
    p.add_argument("--device", default=device, help="cpu | cuda | cuda:N | mps"
                   + ("" if device else "; default: the hparams files'"))


def add_device_map_arguments(p: argparse.ArgumentParser) -> None:
    """``--device-map`` / ``--max-memory``: a model too large for one device, spread with accelerate."""
    p.add_argument("--device-map", dest="device_map", default=None,
                   help="auto (or balanced, sequential): spread a model that does not fit one device over the GPUs, "
                        "CPU and disk with accelerate")
    p.add_argument("--max-memory", dest="max_memory", default=None, metavar="DEV=SIZE,...",
                   help="with --device-map: memory per device, e.g. 0=20GiB,1=20GiB,cpu=60GiB (the rest goes to disk)")


class _Deprecated(argparse.Action):
    """An old spelling of an option: stores as the new one does and says which name to use."""

    def __init__(self, option_strings, dest, new: str = "", target: type[argparse.Action] | None = None, **kw):
        self.new = new
        self.inner = (target or argparse._StoreAction)(option_strings, dest, **kw)
        super().__init__(option_strings, dest, nargs=self.inner.nargs, default=argparse.SUPPRESS,
                         help=argparse.SUPPRESS, type=kw.get("type"))

    def __call__(self, parser, namespace, values, option_string=None):
        notes = list(getattr(namespace, "deprecated_options", None) or [])
        notes.append(f"{option_string} is deprecated; use {self.new} (same meaning)")
        namespace.deprecated_options = notes  # said by the CLI once the command has run (after any error line)
        namespace.option_spellings = {**(getattr(namespace, "option_spellings", None) or {}), self.dest: option_string}
        self.inner(parser, namespace, values, option_string)


def add_deprecated_alias(p: argparse.ArgumentParser, old: str, new: str, dest: str, **kw) -> None:
    """Accept ``old`` (hidden from help) as a deprecated spelling of ``new``: existing scripts keep working."""
    p.add_argument(old, dest=dest, action=_Deprecated, new=new, **kw)




def _update_specs(args: argparse.Namespace) -> list[str]:
    """The update specs of ``sweep`` (``--update PATH``) or ``compare`` (``--update NAME=PATH`` …)."""
    if isinstance(args.update, list):
        return [v.partition("=")[2].strip() for v in args.update]
    return [args.update]


def _any_spec(test):
    from easyedit_split.adapters import artefacts

    return lambda args: any(getattr(artefacts, test)(s) for s in _update_specs(args))


#: flags of sweep/compare that apply only in some cases: (dest, applies(args), when) — see ``cli.FLAG_RULES``
EVALUATION_FLAG_RULES = (
    ("layer", _any_spec("is_pt_spec"), "to an EasyEdit .pt update file (whose name does not give the layer)"),
    ("module_path", _any_spec("is_diffmean_spec"), "to a diffmean@LAYER update"),
    ("dose_accuracy", lambda a: a.dose == "accuracy", "with --dose accuracy"),
    ("manifold_positions", lambda a: a.manifold, "with --manifold"),
    ("reference", lambda a: len(_update_specs(a)) > 1, "when several updates are compared (compare)"),
    ("target_accuracy", lambda a: a.target_pref is None, "without --target-pref (give one calibration target)"),
    ("train_sweep_pairs", lambda a: bool(a.n_train) or _any_spec("is_diffmean_spec")(a),
     "with training pairs (--n-train, or a diffmean@LAYER update)"),
)


def parse_steer_values(text: str) -> list[float]:
    """``--steer-values 3,1`` as floats; a clear error naming the option otherwise."""
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--steer-values {text!r}: give comma-separated numbers, e.g. 3,1") from None
    if not values or any(v != v or v in (float("inf"), float("-inf")) for v in values):
        raise InputError(f"--steer-values {text!r}: give comma-separated finite numbers, e.g. 3,1")
    return values


def add_evaluation_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    add_device_map_arguments(p)
    p.add_argument("--data", default="psychopathy", help="built-in dataset (psychopathy, power-seeking, sentiment) or a data file")
    add_deprecated_alias(p, "--dataset", "--data", "data")
    p.add_argument("--multipliers", default="-5:5:21", help="start:stop:num or a comma list; 0 is added if missing (write --multipliers=-5:5:21 when it starts with -)")
    p.add_argument("--n-pairs", type=positive_int_arg, default=100, help="evaluation pairs (held-out part of the split)")
    p.add_argument("--n-train", type=nonnegative_int_arg, default=0,
                   help="training pairs (for transfer R², and for building diffmean@L updates; default 0, or 200 with diffmean)")
    p.add_argument("--train-sweep-pairs", type=nonnegative_int_arg, default=None,
                   help="sweep only this many training pairs for the transfer R² (default: all; 0: no training sweep)")
    p.add_argument("--seed", type=seed_arg, default=0,
                   help="seed of the held-out split (pairs an update records as its training pairs are never held out)")
    p.add_argument("--layer", type=nonnegative_int_arg, default=None, help="layer for an EasyEdit .pt file not named layer_N.pt")
    p.add_argument("--steer-values", dest="steer_values", default=None,
                   help="an lm_steer checkpoint's apply-time steer_values, comma-separated (e.g. 3,1)")
    p.add_argument("--module-path", dest="module_path", default=None,
                   help="module a diffmean@LAYER vector is read from and sits on, e.g. 'model.layers.{layer}.mlp.down_proj'")
    p.add_argument("--reduction", choices=("sum", "mean"), default="sum", help="sequence-sum or per-token-mean losses")
    p.add_argument("--delta", type=nonnegative_float_arg, default=1.0, help="utility drop defining the valid region")
    p.add_argument("--target-accuracy", type=probability_arg, default=None, help="calibration target (default 0.9)")
    p.add_argument("--target-pref", type=finite_float_arg, default=None, help="calibration target PrefOdds instead of accuracy")
    p.add_argument("--max-util-drop", type=nonnegative_float_arg, default=1.0, help="utility budget of the calibration")
    p.add_argument("--derived-from", dest="derived_from", choices=("means", "fit"), default="means",
                   help="valid region and calibration from the measured means (default) or from converged fits")
    p.add_argument("--fit-boot", dest="fit_boot", type=nonnegative_int_arg, default=30,
                   help="bootstrap resamples of the pairs for intervals on the fits' R² and parameters (0: none)")
    p.add_argument("--manifold", action="store_true", help="also measure the activation-manifold distance")
    p.add_argument("--manifold-positions", choices=("answer", "prompt", "all"), default="all",
                   help="tokens whose site outputs the manifold measure uses")
    p.add_argument("--dose", choices=("raw", "norm", "accuracy"), default="raw",
                   help="common scale for m: raw (as trained), norm (m=1: the update moves its site by the site's mean "
                        "activation norm), accuracy (m=1: reaches --dose-accuracy on the validation pairs)")
    p.add_argument("--dose-accuracy", dest="dose_accuracy", type=probability_arg, default=0.9,
                   help="validation accuracy that dose m=1 reaches with --dose accuracy")
    p.add_argument("--n-val", dest="n_val", type=nonnegative_int_arg, default=0,
                   help="validation pairs, taken after the training pairs (never the evaluation pairs): used by "
                        "--dose accuracy and to find m* of the matched-accuracy comparison")
    p.add_argument("--matched-accuracy", dest="matched_accuracy", default="0.75,0.9",
                   help="comma list of target accuracies at which methods are compared (UtilOdds with bootstrap CIs)")
    p.add_argument("--reference", default=None, help="method the others are differenced against (default: split)")
    p.add_argument("--batch-rows", type=positive_int_arg, default=128, help="(pair, m) rows per forward pass")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv", help="sweep table format")
    p.add_argument("--output", required=True, help="output folder (tables, results.json, PNGs, report.md)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier run in --output (without it they are refused)")
    p.add_argument("--threads", type=positive_int_arg, default=None, help="torch CPU threads")
    p.add_argument("--title", default=None, help="report title")


def load_data(args: argparse.Namespace, need_train: bool,
              trained: Mapping[str, set[str]] | None = None) -> tuple[list, list, list]:
    """(training pairs, held-out pairs, validation pairs) of ``--data`` split by ``--n-pairs``/``--n-train``/
    ``--n-val``/``--seed``; the validation pairs come after the training ones, apart from the held-out pairs.

    ``trained``: ``{update name: digests of its training pairs}`` (see
    :func:`~easyedit_split.adapters.artefacts.recorded_training_pairs`); those pairs are left out before the split,
    so that no held-out pair was seen in training whatever seed and sizes the update was trained with.
    """
    from easyedit_split.data import load_pairs, pair_digests, train_test_split, unique_pairs

    pairs = unique_pairs(load_pairs(args.data), f"--data {args.data}")
    n_train = args.n_train or (200 if need_train else 0)
    if args.n_pairs < 1:
        raise InputError(f"--n-pairs must be >= 1, got {args.n_pairs}")
    left_out = ""
    used = set().union(*trained.values()) if trained else set()
    if used:
        digests = pair_digests(pairs)
        per_update = {name: sum(d in t for d in digests) for name, t in trained.items()}
        kept = [p for p, d in zip(pairs, digests) if d not in used]
        if len(kept) < len(pairs):
            who = ", ".join(f"{n} of update {name or args.update!r}" for name, n in per_update.items() if n)
            logger.warning("--data %s: leaving out %d of its %d pairs that trained the update(s) (%s), so that no "
                           "held-out pair is a training pair", args.data, len(pairs) - len(kept), len(pairs), who)
            left_out = f" left after leaving out the {len(pairs) - len(kept)} pairs the update(s) were trained on ({who})"
            pairs = kept
    n_val = int(getattr(args, "n_val", 0) or 0)
    if n_val < 0:
        raise InputError(f"--n-val must be >= 0, got {n_val}")
    if args.n_pairs + n_train + n_val > len(pairs):
        raise InputError(f"--n-pairs {args.n_pairs} + training pairs {n_train} + --n-val {n_val} exceed the "
                         f"{len(pairs)} pairs of {args.data}{left_out}; lower --n-pairs/--n-train/--n-val or evaluate "
                         "on other data")
    rest, test = train_test_split(pairs, args.n_pairs, seed=args.seed)
    return rest[:n_train], test, rest[n_train:n_train + n_val]


def run_evaluation(args: argparse.Namespace, specs: dict[str, str]) -> int:
    """Check the output, then load every update spec once, sweep them on the held-out pairs and write one
    report (the output folder is locked while written)."""
    from easyedit_split.adapters.artefacts import check_spec
    from easyedit_split.base.atomic_io import (
        EVALUATION_RESULTS,
        check_writable,
        output_lock,
        refuse_earlier_results,
    )
    from easyedit_split.base.multipliers import parse_multipliers, with_zero
    from easyedit_split.core.distributed import current

    set_threads(args.threads)
    grid = with_zero(parse_multipliers(args.multipliers, what="--multipliers"))
    if len(grid) < 2:
        raise InputError(f"--multipliers {args.multipliers}: the grid holds only 0, so nothing is steered; give the "
                         "multipliers to sweep (e.g. --multipliers=-2:2:9)")
    parse_multipliers(getattr(args, "matched_accuracy", "0.75,0.9"), what="--matched-accuracy")
    for name, spec in specs.items():  # before any work: a spec that names nothing
        check_spec(spec, what=f"--update {name + '=' if name else ''}{spec}")
    if not current().is_main:  # under torchrun: every rank sweeps its share, rank 0 writes the report
        return _evaluate(args, specs, grid)
    check_writable(args.output, what="--output")
    refuse_earlier_results(args.output, EVALUATION_RESULTS, overwrite=getattr(args, "overwrite", False))
    with output_lock(args.output, what="--output"):
        return _evaluate(args, specs, grid)


def _evaluate(args: argparse.Namespace, specs: dict[str, str], grid: list[float]) -> int:
    from easyedit_split.adapters.artefacts import is_diffmean_spec, load_artefact, recorded_training_pairs
    from easyedit_split.base.multipliers import parse_multipliers
    from easyedit_split.core.distributed import current
    from easyedit_split.core.models import load_model
    from easyedit_split.core.serialization import save_updates
    from easyedit_split.data import pair_digests
    from easyedit_split.evaluation.api import evaluate_preference_utility

    need_train = any(is_diffmean_spec(s) for s in specs.values())
    trained = {name: d for name, spec in specs.items() if (d := recorded_training_pairs(spec))}
    train, test, val = load_data(args, need_train, trained)
    dose = getattr(args, "dose", "raw") or "raw"
    if dose == "accuracy" and not val:
        raise InputError("--dose accuracy needs validation pairs: give --n-val N")
    targets = parse_multipliers(getattr(args, "matched_accuracy", "0.75,0.9"), what="--matched-accuracy")
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device, device_map=args.device_map,
                                  max_memory=args.max_memory)
    main = current().is_main
    sweep_train = train if args.train_sweep_pairs is None else train[: args.train_sweep_pairs]
    steer_values = getattr(args, "steer_values", None)
    resolved = {name: load_artefact(spec, model, layer=args.layer, tokenizer=tokenizer, train_pairs=train,
                                    module_path=args.module_path,
                                    steer_values=parse_steer_values(steer_values) if steer_values else None)
                for name, spec in specs.items()}
    for name, loaded in resolved.items():
        if loaded.kind == "diffmean" and main:  # keep the train-free vector that was evaluated, with its rendering
            path = Path(args.output) / f"diffmean_{name or 'update'}.safetensors"
            save_updates(path, loaded.updates, model=model, method="diffmean", hparams=loaded.info["hparams"],
                         extra={"n_train_pairs": len(train), "data": args.data, "seed": args.seed,
                                "train_pair_digests": pair_digests(train)})
            logger.info("saved the DiffMean vector to %s", path)
    doses = None
    if dose != "raw" or len(resolved) > 1:  # the norms are reported whenever methods are compared
        from easyedit_split.evaluation.doses import dose_all

        resolved, doses = dose_all(model, tokenizer, resolved, dose, norm_pairs=test, validation_pairs=val or None,
                                   target_accuracy=args.dose_accuracy, batch_rows=args.batch_rows)
    result = evaluate_preference_utility(
        model, tokenizer, resolved, test, grid, train_pairs=sweep_train or None, output_dir=args.output if main else None,
        validation_pairs=val or None, matched_targets=targets, reference=getattr(args, "reference", None), doses=doses,
        manifold_positions=args.manifold_positions,
        reduction=args.reduction, delta=args.delta, target_pref=args.target_pref, target_accuracy=args.target_accuracy,
        max_util_drop=args.max_util_drop, derived_from=args.derived_from, fit_boot=args.fit_boot,
        manifold=args.manifold, batch_rows=args.batch_rows, seed=args.seed,
        title=args.title, table_format=args.format, progress=main)
    if not main:
        return 0
    out = sys.stdout
    for name, ev in result.methods.items():
        for fit in ev.fits.values():
            out.write(f"{name or 'update'}: {fit.label} R²={fit.r2:.4f}\n" if fit.success
                      else f"{name or 'update'}: {fit.label} {fit.status}: {fit.message}\n")
        if ev.valid_region:
            out.write(f"  valid region [{ev.valid_region.lo:.3g}, {ev.valid_region.hi:.3g}] (from the {ev.valid_region.source})\n")
        if ev.calibration:
            c = ev.calibration
            out.write(f"  calibrated multiplier: {c.multiplier if c.multiplier is not None else 'none'} ({c.reason})\n")
        if ev.dose is not None:
            out.write(f"  dose {ev.dose.mode}: raw m = {ev.dose.factor:.4g} × m\n")
    for c in result.matched:
        for r in c.rows:
            util = "not reached" if r.util is None else f"UtilOdds {r.util:.3f} [{r.util_lo:.3f}, {r.util_hi:.3f}]"
            m_star = "–" if r.m_star is None else f"{r.m_star:.4g}"
            out.write(f"accuracy {c.target_accuracy:g}: {r.method} m*={m_star} {util}\n")
    out.write(f"report: {result.files.get('report')}\n")
    return 0
