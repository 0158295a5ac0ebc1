"""``easyedit-split easyedit``: make EasyEdit's unmodified scripts see the plugin (opt-in, undoable), prepare a
run folder for ``examples/run_SPILT.py`` and turn its vectors directory into a comparison report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from easyedit_split.base.checks import positive_int_arg, seed_arg
from easyedit_split.errors import InputError

HELP = ("inside EasyEdit: enable/disable/status of automatic registration, prepare a run_SPILT.py run folder, "
        "report on its vectors")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    en = sub.add_parser("enable", help="write a .pth file into site-packages that registers the plugin whenever "
                                       "EasyEdit's steer.utils.alg_dict is imported")
    en.add_argument("--keep-upstream", action="store_true",
                    help="keep EasyEdit's own spilt/sft/reps entries instead of taking them over")
    for name, text in (("disable", "remove the .pth file again"), ("status", "say whether the .pth file is there")):
        sub.add_parser(name, help=text)
    for q in (en, sub.choices["disable"], sub.choices["status"]):
        q.add_argument("--site-dir", default=None, help="site-packages folder to use (default: this interpreter's)")

    pr = sub.add_parser("prepare", help="a writable run folder for EasyEdit's examples/run_SPILT.py, made from a "
                                        "checkout (copied as is) plus the package's SmolLM2 configs, model link and data")
    pr.add_argument("--checkout", required=True, help="EasyEdit checkout (read only is fine)")
    pr.add_argument("--into", required=True, help="run folder to create (must not exist, or be empty)")
    pr.add_argument("--model", default=None, help="Hugging Face model folder (default: the built-in SmolLM2-135M-Instruct)")
    pr.add_argument("--model-name", default=None,
                    help="name of the model link under models/ and of the config folder; EasyEdit picks its wrapper "
                         "class from it (default: smollm2-135m-llama)")
    pr.add_argument("--train-pairs", type=positive_int_arg, default=32, help="pairs in data/psychopathy/train.jsonl")
    pr.add_argument("--test-pairs", type=positive_int_arg, default=8,
                    help="pairs in data/psychopathy/test.jsonl (run_SPILT.py generates for each of them)")
    pr.add_argument("--heldout-pairs", type=positive_int_arg, default=100,
                    help="held-out pairs in data/psychopathy/heldout.jsonl (test.jsonl is its first rows; the report's "
                         "default evaluation set)")
    pr.add_argument("--seed", type=seed_arg, default=0, help="seed of the split")
    pr.add_argument("--dtype", default=None,
                    help="rewrite the dtype line of the run folder's copies of EasyEdit's top-level spilt_experiment "
                         "configs (they say bfloat16, which run_SPILT.py cannot override; float32 is much faster on "
                         "CPUs without bfloat16 support)")

    rp = sub.add_parser("report", help="preference-utility comparison of every method in a run_SPILT.py vectors "
                                       "directory (RUN/vectors/<model>), saying which implementation produced each row")
    rp.add_argument("vectors", help="vectors directory: RUN/vectors/<model_name>")
    rp.add_argument("--model", default=None, help="model (default: RUN/models/<model_name>)")
    rp.add_argument("--data", default=None,
                    help="evaluation pairs (default: RUN/data/<dataset>/heldout.jsonl, else test.jsonl)")
    rp.add_argument("--train-data", default=None,
                    help="also sweep these pairs for the transfer R² (e.g. RUN/data/psychopathy/train.jsonl)")
    rp.add_argument("--multipliers", default="-5:5:21",
                    help="start:stop:num or a comma list; 0 is added (write --multipliers=-5:5:21 when it starts with -)")
    rp.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16 (also fp32, bf16, fp16)")
    rp.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps")
    rp.add_argument("--seed", type=seed_arg, default=0, help="seed of the bootstrap intervals")
    rp.add_argument("--output", required=True, help="report folder (tables, results.json, provenance.json, PNGs, report.md)")
    rp.add_argument("--overwrite", action="store_true", help="replace the results of an earlier report in --output")

    ed = sub.add_parser("edit", help="EasyEdit's editing benchmarks (ZsRE, CounterFact, KnowEdit JSON, read by EasyEdit's "
                                     "dataset classes) with SPLIT beside EasyEdit's FT, LoRA, ROME, MEMIT through BaseEditor: "
                                     "EasyEdit's metrics and the preference-utility comparison")
    ed.add_argument("--editing_method", "--editing-method", dest="editing_method", nargs="+", required=True,
                    metavar="METHOD", help="one or more of SPLIT FT LoRA ROME MEMIT (or any alg_name with a YAML in "
                                           "--hparams_dir)")
    ed.add_argument("--data_type", "--data-type", dest="data_type", required=True, choices=("zsre", "counterfact", "knowedit"),
                    help="the EasyEdit dataset format of --data_dir")
    ed.add_argument("--data_dir", "--data-dir", dest="data_dir", required=True,
                    help="the benchmark's JSON file, as EasyEdit's run scripts take it")
    ed.add_argument("--ds_size", "--ds-size", dest="ds_size", type=int, default=None, help="first N records")
    ed.add_argument("--hparams_dir", "--hparams-dir", dest="hparams_dir", default=None,
                    help="folder of <METHOD>.yaml files, or one YAML when one method is given "
                         "(default: the shipped SmolLM2 YAMLs, hparams/smollm2/editing)")
    ed.add_argument("--model", default=None, help="model for every editor (built-in name or folder); default: the YAMLs'")
    ed.add_argument("--multipliers", default="-3:3:13", help="start:stop:num or a comma list; must hold 0 and 1")
    ed.add_argument("--easyedit", default=None, help="EasyEdit checkout (default: $EASYEDIT_PATH)")
    ed.add_argument("--output", required=True, help="output folder (report.md, results.json, comparison.png, ...)")

    sc = sub.add_parser("scaffold", help="what running EasyEdit's steering scripts directly needs, for one model: a "
                                         "llama-named model folder, the data layout and a hydra config (--out writes them; "
                                         "without it they are printed)")
    sc.add_argument("--model", default="smollm2", help="built-in name or Hugging Face folder (default: smollm2)")
    sc.add_argument("--checkout", default=None, help="EasyEdit checkout (default: $EASYEDIT_PATH)")
    sc.add_argument("--method", default="split", help="steering method of the generated configs (default: split)")
    sc.add_argument("--layer", type=int, default=None, help="layer of the configs (default: the middle layer)")
    sc.add_argument("--train-pairs", type=int, default=8, help="pairs in data/<dataset>/train.jsonl")
    sc.add_argument("--test-pairs", type=int, default=2, help="pairs in data/<dataset>/test.jsonl")
    sc.add_argument("--out", default=None, help="folder to write (must not exist, or be empty); omitted: print only")


def _enable(args: argparse.Namespace) -> int:
    from easyedit_split.easyedit import autoregister

    path = autoregister.enable(args.site_dir, keep_upstream=args.keep_upstream)
    keep = " (keeping EasyEdit's own spilt/sft/reps)" if args.keep_upstream else ""
    where = "" if autoregister.site_dir_note(args.site_dir) is None else " (see the warning: not read by this Python)"
    undo = "" if args.site_dir is None else f" --site-dir {args.site_dir}"
    sys.stdout.write(f"enabled{keep}: {path}{where}\nundo with: easyedit-split easyedit disable{undo}\n")
    return 0


def _disable(args: argparse.Namespace) -> int:
    from easyedit_split.easyedit import autoregister

    path, existed = autoregister.disable(args.site_dir)
    sys.stdout.write(f"disabled: removed {path}\n" if existed else f"was not enabled ({path} does not exist)\n")
    return 0


def _status(args: argparse.Namespace) -> int:
    from easyedit_split.easyedit import autoregister

    path, enabled, keep = autoregister.status(args.site_dir)
    if enabled:
        sys.stdout.write(f"enabled{' (keep upstream)' if keep else ''}: {path}\n")
    else:
        sys.stdout.write(f"disabled: {path} does not exist\n")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from easyedit_split.easyedit.run_folder import DEFAULT_MODEL_NAME, prepare_run_folder

    run = prepare_run_folder(args.checkout, args.into, model=args.model, model_name=args.model_name or DEFAULT_MODEL_NAME,
                             n_train=args.train_pairs, n_test=args.test_pairs, n_heldout=args.heldout_pairs,
                             seed=args.seed, dtype=args.dtype)
    sys.stdout.write(f"run folder: {run.folder}\nmodel: models/{run.model_name} -> {run.model_target}\n"
                     f"data: {run.train_file.relative_to(run.folder)} ({run.n_train} pairs), "
                     f"{run.test_file.relative_to(run.folder)} ({run.n_test} pairs), "
                     f"{run.heldout_file.relative_to(run.folder)} ({run.n_heldout} pairs)\n"
                     + (f"dtype: {run.dtype} in the copies of the top-level configs\n" if run.dtype else "") +
                     f"configs: {len(run.configs)} files under {run.configs[0].parents[1].relative_to(run.folder)}\n"
                     f"next (with `easyedit-split easyedit enable` done):\n  cd {run.folder} && {run.run_command()}\n")
    return 0


def _fit_text(label: str, fit) -> str:
    """``R²(label)=…`` for a converged fit, else what happened to it (skipped: the fitter's reason)."""
    if fit is None:
        return f"R²({label}): no fit"
    status = getattr(fit, "status", "ok")
    if status != "ok":
        return f"R²({label}): fit {status} ({getattr(fit, 'message', '')})"
    return f"R²({label})={fit.r2:.3f}"


def _report(args: argparse.Namespace) -> int:
    from easyedit_split.base.atomic_io import EVALUATION_RESULTS, check_writable, refuse_earlier_results
    from easyedit_split.base.multipliers import parse_multipliers, with_zero
    from easyedit_split.core.models import load_model
    from easyedit_split.data.pairs import load_pairs
    from easyedit_split.easyedit.comparison import compare_vector_runs, find_vector_runs, run_prompt_settings

    check_writable(args.output, what="--output")  # before any work
    refuse_earlier_results(args.output, EVALUATION_RESULTS, overwrite=args.overwrite)
    grid = with_zero(parse_multipliers(args.multipliers, what="--multipliers"))
    vectors = Path(args.vectors)
    runs = find_vector_runs(vectors)
    run_folder = vectors.resolve().parents[1] if vectors.resolve().parent.name == "vectors" else None
    model = args.model or (run_folder / "models" / vectors.resolve().name if run_folder else None)
    if model is None:
        raise InputError(f"{vectors} is not RUN/vectors/<model_name>: give --model")
    data = args.data
    if data is None and run_folder is not None:
        folder = run_folder / "data" / runs[0].dataset
        data = folder / "heldout.jsonl" if (folder / "heldout.jsonl").is_file() else folder / "test.jsonl"
    if data is None:
        raise InputError(f"{vectors} is not RUN/vectors/<model_name>: give --data")
    pairs = load_pairs(data)
    train = load_pairs(args.train_data) if args.train_data else None
    encode_kwargs = run_prompt_settings(run_folder) if run_folder else {}
    base, tokenizer = load_model(model, dtype=args.dtype, device=args.device)
    result, runs = compare_vector_runs(vectors, base, tokenizer, pairs, grid,
                                       output_dir=args.output, train_pairs=train, encode_kwargs=encode_kwargs,
                                       seed=args.seed)
    out = sys.stdout
    for r in runs:
        ev = result.methods[r.name]
        fits = "; ".join(_fit_text(label, ev.fits.get(key)) for key, label in (("pref", "PrefOdds"), ("util", "UtilOdds")))
        out.write(f"{r.name}: {r.implementation} ({r.folder}); {fits}\n")
    out.write(f"report: {result.files.get('report')}\n")
    return 0


def _edit(args: argparse.Namespace) -> int:
    from easyedit_split.base.multipliers import parse_multipliers
    from easyedit_split.editing.compare import SHIPPED_HPARAMS, compare_editors
    from easyedit_split.editing.datasets import read_easyedit_dataset

    root = Path(args.hparams_dir) if args.hparams_dir else SHIPPED_HPARAMS
    if root.is_file():
        if len(args.editing_method) != 1:
            raise InputError(f"--hparams_dir {root} is one YAML; give a folder of <METHOD>.yaml for several methods")
        files = [root]
    else:
        files = [root / f"{m}.yaml" for m in args.editing_method]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise InputError(f"--hparams_dir {root}: no YAML for {', '.join(missing)}")
    requests = read_easyedit_dataset(args.data_type, args.data_dir, size=args.ds_size, easyedit_path=args.easyedit)
    results = compare_editors(files, args.output, requests=requests, model=args.model,
                              multipliers=parse_multipliers(args.multipliers, what="--multipliers"),
                              easyedit_path=args.easyedit,
                              command="easyedit-split easyedit edit " + " ".join(sys.argv[1:]))
    out = sys.stdout
    for name, r in results["methods"].items():
        e, pairs = r["easyedit"], r["edit_pairs"]
        out.write(f"{name}: rewrite acc {e['rewrite_acc_pre']:.2f} -> {e['rewrite_acc_post']:.2f}, locality acc "
                  f"{e['locality_acc_post']:.2f}; PrefOdds m=0 {pairs['pref_m0']:.2f} -> m=1 {pairs['pref_m1']:.2f}\n")
    for name, error in results["failed"].items():
        sys.stderr.write(f"{name} FAILED: {error}\n")
    out.write(f"report: {Path(args.output) / 'report.md'} ({len(requests)} {args.data_type} requests)\n")
    return 1 if results["failed"] else 0


def _scaffold(args: argparse.Namespace) -> int:
    from easyedit_split.easyedit.scaffold import Scaffold

    scaffold = Scaffold.for_model(args.model, checkout=args.checkout, method=args.method, layer=args.layer,
                                  n_train=args.train_pairs, n_test=args.test_pairs)
    if args.out:
        scaffold.write(args.out)
    sys.stdout.write(scaffold.describe(args.out))
    return 0


_ACTIONS = {"enable": _enable, "disable": _disable, "status": _status, "prepare": _prepare, "report": _report,
            "edit": _edit, "scaffold": _scaffold}


def run(args: argparse.Namespace) -> int:
    return _ACTIONS[args.action](args)
