"""``easyedit-split run``: the main job (train, sweep, fit, generate, report) on built-in defaults."""

from __future__ import annotations

import argparse
import sys

from easyedit_split.base.checks import nonnegative_int_arg, positive_int_arg, probability_arg, seed_arg
from easyedit_split.cli.common import add_deprecated_alias, add_model_arguments

HELP = "run the main job: train SPLIT/SFT/DiffMean, sweep preference and utility, fit, generate, report"


#: flags that apply only in some cases (see ``cli``)
FLAG_RULES = (("dose_accuracy", lambda a: a.dose == "accuracy", "with --dose accuracy"),)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p, dtype=None, device=None)
    p.add_argument("--data", dest="dataset", metavar="DATA", default=None,
                   help="built-in dataset (psychopathy, power-seeking, sentiment) or a data file; default psychopathy")
    add_deprecated_alias(p, "--dataset", "--data", "dataset")
    p.add_argument("--forms", default=None, help="'all' or a comma list of vector,lora,local_weight (default: vector)")
    p.add_argument("--methods", default=None, help="comma list of split,sft,reps,dpo,diffmean (default: split,sft,diffmean)")
    p.add_argument("--layer", type=nonnegative_int_arg, default=None, help="steered layer (default: the hparams files')")
    p.add_argument("--module-path", dest="module_path", default=None,
                   help="module the update sits on instead of the component, e.g. 'model.layers.{layer}.mlp.down_proj' ('{layer}' = the layer)")
    p.add_argument("--hparams-dir", dest="hparams_dir", default=None, help="folder of <method>_<form>.yaml files")
    p.add_argument("--n-train", dest="n_train", type=nonnegative_int_arg, default=None,
                   help="training pairs (default 160)")
    p.add_argument("--n-test", dest="n_test", type=nonnegative_int_arg, default=None,
                   help="pairs held out by the seeded split (default 100)")
    p.add_argument("--n-eval", dest="n_eval", type=nonnegative_int_arg, default=None,
                   help="held-out pairs swept, the first of the held-out part (default 40)")
    p.add_argument("--n-transfer", dest="n_transfer", type=nonnegative_int_arg, default=None,
                   help="training pairs also swept, for the transfer R² of the fits (default 0)")
    p.add_argument("--n-epochs", dest="n_epochs", type=positive_int_arg, default=None,
                   help="training epochs (default: the hparams files')")
    p.add_argument("--multipliers", default=None,
                   help="sweep grid: a comma list or start:stop:num (must hold 0 and 1)")
    p.add_argument("--gen-multipliers", dest="gen_multipliers", default=None,
                   help="generation multipliers: a comma list or start:stop:num")
    p.add_argument("--prompt", dest="prompts", action="append", default=None, help="generation prompt (repeatable)")
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=positive_int_arg, default=None,
                   help="tokens generated per completion (default 32)")
    p.add_argument("--dose", choices=("raw", "norm", "accuracy"), default=None,
                   help="common scale for m (default raw): norm (m=1 moves the site by its mean activation norm) or "
                        "accuracy (m=1 reaches --dose-accuracy on the validation pairs)")
    p.add_argument("--dose-accuracy", dest="dose_accuracy", type=probability_arg, default=None,
                   help="validation accuracy that dose m=1 reaches with --dose accuracy (default 0.9)")
    p.add_argument("--n-val", dest="n_val", type=nonnegative_int_arg, default=None, help="validation pairs (default 40)")
    p.add_argument("--matched-accuracy", dest="matched_accuracy", default=None,
                   help="target accuracies of the matched comparison, comma list (default 0.75,0.9)")
    p.add_argument("--seed", type=seed_arg, default=None, help="seed of the split, the training and generation (default 0)")
    p.add_argument("--threads", type=positive_int_arg, default=None, help="torch threads")
    p.add_argument("--output", dest="output_dir", default=None, help="report folder (default runs/main-<timestamp>)")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bars or progress log lines (same as before the command)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --output")


def run(args: argparse.Namespace) -> int:
    from easyedit_split.base.multipliers import parse_multipliers
    from easyedit_split.jobs.main_job import config_from_args, parse_forms, parse_list, run_main_job

    if args.forms is not None:
        args.forms = list(parse_forms(args.forms))
    if args.methods is not None:
        args.methods = list(parse_list(args.methods, "--methods"))
    if args.multipliers is not None:
        args.multipliers = parse_multipliers(args.multipliers, what="--multipliers")
    if args.gen_multipliers is not None:
        args.gen_multipliers = parse_multipliers(args.gen_multipliers, what="--gen-multipliers")
    if args.matched_accuracy is not None:
        args.matched_accuracy = parse_multipliers(args.matched_accuracy, what="--matched-accuracy")
    cfg = config_from_args(args)
    if getattr(args, "no_progress", False):
        cfg.progress = False
    result = run_main_job(cfg)
    out = sys.stdout
    out.write(f"\nmain job finished in {result.seconds:.0f} s\n")
    for row in result.table:
        out.write(f"  {row['form']:<12} {row['method']:<10} m={row['m']:<4g} accuracy {100 * row['accuracy']:5.1f}%  "
                  f"PrefOdds {row['pref']:+7.2f}  UtilOdds {row['util']:+7.2f}\n")
    out.write(f"report: {result.output_dir / 'summary.md'}\n")
    return 0
