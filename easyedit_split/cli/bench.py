"""``easyedit-split bench``: every method on many concepts (the factor chosen on validation), aggregated.

Under ``torchrun --nproc-per-node N -m easyedit_split.cli bench ...`` the cells (with ``--mixed-sweeps`` the
concepts) are spread over the ranks.
"""

from __future__ import annotations

import argparse
import sys

from easyedit_split.base.checks import nonnegative_int_arg, positive_int_arg

HELP = "benchmark every method on many concepts (a folder of <concept>.jsonl files) and aggregate across them"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concepts-dir", dest="concepts_dir", default=None,
                   help="folder of <concept>.jsonl(.gz) files, persona or EasyEdit layout (default: the embedded subset)")
    p.add_argument("--concepts", default=None, help="comma list of concept names (default: every concept of --role)")
    p.add_argument("--role", choices=("report", "tuning", "all"), default=None,
                   help="which concepts of the recorded tuning/report split to run (default report)")
    p.add_argument("--max-concepts", dest="max_concepts", type=positive_int_arg, default=None,
                   help="only the first N concepts (by name)")
    p.add_argument("--quick", action="store_true",
                   help="8 concepts, 40/24/40 training/validation/test pairs, the 11-point grid (a 2-core CPU run); "
                        "explicit options override it")
    p.add_argument("--methods", default=None, help="comma list of split,sft,reps,dpo,diffmean,prompt "
                                                   "(default split,sft,reps,diffmean,prompt)")
    p.add_argument("--forms", default=None, help="'all' or a comma list of vector,lora,local_weight (default vector)")
    p.add_argument("--model", default=None, help="model (default: built-in SmolLM2-135M-Instruct)")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda:LOCAL_RANK where available, else cpu)")
    p.add_argument("--hparams-dir", dest="hparams_dir", default=None, help="folder of <method>_<form>.yaml files "
                                                                           "(default: the shipped SmolLM2 defaults)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="METHOD[_FORM].KEY=VALUE",
                   help="override an hparams key of one method (or method and form), YAML value; repeatable, "
                        "e.g. split.lr=0.5 or split_vector.steering_factors=[1]")
    p.add_argument("--layer", type=nonnegative_int_arg, default=None, help="steered layer (default: the YAMLs')")
    p.add_argument("--n-train", dest="n_train", type=positive_int_arg, default=None, help="training pairs per concept (160)")
    p.add_argument("--n-val", dest="n_val", type=positive_int_arg, default=None, help="validation pairs per concept (40)")
    p.add_argument("--n-test", dest="n_test", type=positive_int_arg, default=None, help="test pairs per concept (100)")
    p.add_argument("--multipliers", default=None,
                   help="grid (comma list or start:stop:num) with 0, 1, 2 and enough points for the fits "
                        "(default -6,-4,-3,-2,-1,-0.5,0,0.5,1,1.5,2,3,4,6)")
    p.add_argument("--matched-accuracy", dest="matched_accuracy", default=None,
                   help="target accuracies for UtilOdds at matched accuracy, comma list (default 0.75)")
    p.add_argument("--fit-boot", dest="fit_boot", type=nonnegative_int_arg, default=None,
                   help="bootstrap refits per curve for R² intervals (default 0)")
    p.add_argument("--prompt-template", dest="prompt_template", default=None,
                   help="the prompt baseline's prompt; {concept} is the concept's name (default "
                        "'Answer as someone with this trait: {concept}.')")
    p.add_argument("--seed", type=int, default=None, help="seed of the pair splits and the training (default: the YAMLs' seed)")
    p.add_argument("--threads", type=positive_int_arg, default=None, help="torch threads per process")
    p.add_argument("--output", dest="output_dir", default=None, help="output folder (default runs/bench-<timestamp>)")
    p.add_argument("--overwrite", action="store_true",
                   help="the output folder holds a run with other settings: delete its results and start over")
    p.add_argument("--report-only", dest="report_only", action="store_true",
                   help="run no cell: write the report from the concepts already complete in --output")
    p.add_argument("--mixed-sweeps", dest="mixed_sweeps", action="store_true",
                   help="per concept, train every cell first, then sweep all of its updates in one mixed pass "
                        "(the same results to float rounding; updates kept in cells/<concept>/*.safetensors; "
                        "under torchrun whole concepts go to each rank)")
    p.add_argument("--no-plots", dest="no_plots", action="store_true", help="write report.md and results.json only")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bars or progress log lines (same as before the command)")


def parse_sets(items: list[str]) -> dict[str, dict]:
    """``["split.lr=0.5", "split_vector.steering_factors=[1]"]`` → ``{"split": {"lr": 0.5}, "split_vector": {...}}``."""
    import yaml

    from easyedit_split.errors import InputError

    out: dict[str, dict] = {}
    for item in items:
        target, eq, value = item.partition("=")
        scope, dot, key = target.partition(".")
        if not eq or not dot or not scope or not key:
            raise InputError(f"--set {item!r}: write METHOD.KEY=VALUE or METHOD_FORM.KEY=VALUE, e.g. split.lr=0.5")
        try:
            out.setdefault(scope.strip(), {})[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise InputError(f"--set {item!r}: the value is not YAML ({exc})") from None
    return out


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from easyedit_split.base.multipliers import parse_multipliers
    from easyedit_split.bench import QUICK, BenchConfig, run_bench
    from easyedit_split.jobs.main_job import parse_forms, parse_list

    changes: dict = dict(QUICK) if args.quick else {}
    if args.concepts is not None:
        changes["concepts"] = tuple(parse_list(args.concepts, "--concepts"))
    if args.methods is not None:
        changes["methods"] = tuple(parse_list(args.methods, "--methods"))
    if args.forms is not None:
        changes["forms"] = tuple(parse_forms(args.forms))
    if args.multipliers is not None:
        changes["multipliers"] = tuple(parse_multipliers(args.multipliers, what="--multipliers"))
    if args.matched_accuracy is not None:
        changes["matched_accuracy"] = tuple(parse_multipliers(args.matched_accuracy, what="--matched-accuracy"))
    if args.sets:
        changes["overrides"] = parse_sets(args.sets)
    for name in ("concepts_dir", "role", "max_concepts", "model", "dtype", "device", "hparams_dir", "layer", "n_train",
                 "n_val", "n_test", "fit_boot", "prompt_template", "seed", "threads", "output_dir"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    cfg = dataclasses.replace(BenchConfig(), **changes, overwrite=args.overwrite, plots=not args.no_plots,
                              progress=not getattr(args, "no_progress", False), report_only=args.report_only,
                              mixed_sweeps=args.mixed_sweeps)
    result = run_bench(cfg)
    if result.results is None:  # a rank other than 0
        return 0
    out = sys.stdout
    out.write(f"\nbenchmark finished in {result.seconds:.0f} s ({len(result.cells_run)} cell(s) run, "
              f"{len(result.cells_reused)} reused); {len(result.results['concepts'])} concepts\n")
    for name, entry in result.results["methods"].items():
        m = entry["metrics"]
        med = m["acc_chosen"]["median"]
        m1 = m["acc_m1"]["median"]
        out.write(f"  {name:<16} median accuracy {'–' if med is None else f'{100 * med:.0f}%'} at the chosen m, "
                  f"{'–' if m1 is None else f'{100 * m1:.0f}%'} at m = 1; {len(entry['failures'])} failure(s)\n")
    out.write(f"report: {result.output_dir / 'report.md'}\n")
    return 0
