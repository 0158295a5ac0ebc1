"""The table of steps of ``benchmarks/reproduce_readme.py``: every measured figure of the README and the docs
pages (and of the notes they cite), the commands that regenerate it, what they write, how long they took.

Data only (no running): the runner, its selection, order and record are ``reproduce_readme.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------------------------------------------------------
# The table of steps
# ---------------------------------------------------------------------------------------------------------------
# argv elements may hold placeholders, filled in when a step runs: {python} this interpreter, {root} the
# repository, {output} the output root, {step} the step's own folder ({output}/<name>), {easyedit} the
# EasyEdit checkout.

CLI = ("{python}", "-m", "easyedit_split.cli")
EDITOR_COMPARISON = ("{python}", "-m", "easyedit_split.editing.compare")
#: writes ``sitecustomize.py`` into argv[1] that adds the site folder argv[2] (where ``easyedit enable --site-dir``
#: put its .pth file): EasyEdit's scripts and the subprocesses they start then register the plugin, without
#: touching this environment's site-packages
WRITE_SITECUSTOMIZE = (
    "import pathlib, sys; from easyedit_split.base.atomic_io import atomic_write_text; "
    "boot, site_dir = (pathlib.Path(a).resolve() for a in sys.argv[1:3]); "
    "atomic_write_text(boot / 'sitecustomize.py', 'import site; site.addsitedir(%r)\\n' % str(site_dir))"
)
SPLIT_VECTOR = "{output}/train_split_vector/train/split_vector/layer_15.safetensors"
MAIN_UPDATES = "{output}/main/job/updates"
EASYEDIT_MODEL_NAME = "smollm2-135m-llama"


@dataclass(frozen=True)
class Command:
    """One subprocess of a step."""

    argv: tuple[str, ...]
    #: the command has a ``--threads N`` option (``--threads`` of this script is passed on to it)
    threads_option: bool = False
    #: working folder (placeholders allowed)
    cwd: str = "{root}"
    #: folders put before the repository root on PYTHONPATH (placeholders allowed)
    pythonpath: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """A README figure block and the commands that regenerate it."""

    name: str
    #: the README section and the figure(s) it regenerates
    section: str
    commands: tuple[Command, ...]
    #: files and folders the step writes, relative to its folder (checked after it ran)
    writes: tuple[str, ...]
    #: rough wall time on the 2-core development CPU, minutes
    minutes: float
    #: where ``minutes`` comes from: what the README/notes measured, or how it was estimated
    time_source: str
    #: PNGs for docs/img: (file in the step folder, name in docs/img), copied with --update-docs
    figures: tuple[tuple[str, str], ...] = ()
    #: steps whose outputs this one reads (run first)
    after: tuple[str, ...] = ()
    needs_gpu: bool = False
    needs_easyedit: bool = False
    #: what to know when comparing the regenerated figures with the README's
    note: str = ""

    @property
    def estimated(self) -> bool:
        return self.time_source.startswith("estimate")

    def needs(self) -> str:
        return ", ".join(n for n, on in (("GPU", self.needs_gpu), ("EasyEdit", self.needs_easyedit)) if on) or "CPU"


def _eval_outputs(folder: str, *extra: str) -> tuple[str, ...]:
    """What one preference-utility evaluation writes into ``folder``."""
    return tuple(f"{folder}/{name}" for name in ("report.md", "results.json", "curves.png", *extra))


STEPS: tuple[Step, ...] = (
    Step(
        name="main",
        section="Quick start: the main job's summary table, timings and samples; "
                "docs/img/pu_psychopathy_trained_curves.png; Results › Curves: R² on m ∈ [−6, 6]",
        commands=(Command((*CLI, "run", "--output", "{step}/job"), threads_option=True),),
        writes=("job/summary.md", "job/summary.json", "job/config.json", "job/samples.jsonl",
                *_eval_outputs("job/eval_vector"),
                "job/updates/split_vector.safetensors", "job/updates/sft_vector.safetensors",
                "job/updates/diffmean_vector.safetensors"),
        figures=(("job/eval_vector/curves.png", "pu_psychopathy_trained_curves.png"),),
        minutes=6,
        time_source="measured: 344 s on the idle 2-core CPU (1507 s with two other jobs running)",
        note="The README's 'Curves' R² on m ∈ [−6, 6] was measured with the previous defaults and the earlier "
             "SLSQP fitter; the quick-start table and timings with the shipped defaults.",
    ),
    Step(
        name="wide_curves",
        section="Results › Curves: the main job's vectors on 100 held-out pairs, m ∈ [−8, 8]; "
                "docs/img/pu_psychopathy_trained_wide_curves.png",
        commands=(Command((*CLI, "compare",
                           "--update", f"split={MAIN_UPDATES}/split_vector.safetensors",
                           "--update", f"sft={MAIN_UPDATES}/sft_vector.safetensors",
                           "--update", f"diffmean={MAIN_UPDATES}/diffmean_vector.safetensors",
                           "--n-pairs", "100", "--n-train", "30", "--multipliers=-8:8:17",
                           "--output", "{step}/compare"), threads_option=True),),
        writes=_eval_outputs("compare"),
        figures=(("compare/curves.png", "pu_psychopathy_trained_wide_curves.png"),),
        after=("main",),
        minutes=30,
        time_source="estimate: 3 updates × 130 pairs × 17 multipliers at the sweep rates of bench_sweep",
        note="Measured on the main job's vectors of the previous defaults, with the earlier SLSQP fitter; compare "
             "now leaves the updates' recorded training pairs out before the seeded split, so its 100 held-out "
             "pairs need not be Table 3's.",
    ),
    Step(
        name="diffmean_curves",
        section="Results › Curves: DiffMean R² (held-out and transfer), docs/img/pu_psychopathy_diffmean15_curves.png; "
                "notes/evaluation.md (docs/img/pu_psychopathy_diffmean15_manifold.png)",
        commands=(Command((*CLI, "sweep", "--update", "diffmean@15", "--data", "psychopathy", "--n-pairs", "40",
                           "--n-train", "200", "--train-sweep-pairs", "40", "--multipliers=-30:30:21", "--manifold",
                           "--output", "{step}/sweep"), threads_option=True),),
        writes=(*_eval_outputs("sweep", "manifold.png"), "sweep/diffmean_update.safetensors"),
        figures=(("sweep/curves.png", "pu_psychopathy_diffmean15_curves.png"),
                 ("sweep/manifold.png", "pu_psychopathy_diffmean15_manifold.png")),
        minutes=12,
        time_source="estimate: a DiffMean vector from 200 pairs and 80 pairs × 21 multipliers with the manifold",
        note="notes/evaluation.md's manifold figures were measured with the first token kept (now left out).",
    ),
    Step(
        name="fits",
        section="Results › Fits: design-form R² of a DiffMean vector on 20 held-out pairs, 21 and 13 multipliers "
                "(rerun with --threads 1 and --threads 2 for the thread-independence figures)",
        commands=tuple(Command((*CLI, "sweep", "--update", "diffmean@15", "--n-pairs", "20", "--n-train", "40",
                                "--train-sweep-pairs", "0", f"--multipliers={grid}", "--output", f"{{step}}/{name}"),
                               threads_option=True)
                       for name, grid in (("grid21", "-30:30:21"), ("grid13", "-6:6:13"))),
        writes=(*_eval_outputs("grid21"), *_eval_outputs("grid13")),
        minutes=5,
        time_source="estimate: two sweeps of 20 pairs (21 and 13 multipliers) with DiffMean vectors from 40 pairs",
        note="The earlier fitter's figures quoted beside them cannot be regenerated (that code is gone).",
    ),
    Step(
        name="train_split_vector",
        section="(input of dial_verify and doses) the SPLIT vector trained with the shipped "
                "hparams/smollm2/split_vector.yaml",
        commands=(Command((*CLI, "train", "--hparams", "hparams/smollm2/split_vector.yaml",
                           "--output", "{step}/train")),),
        writes=("train/split_vector/layer_15.safetensors", "train/split_vector/layer_15.pt"),
        minutes=9,
        time_source="notes/training.md: training ≈ 9 min wall (load average ≈ 10)",
    ),
    Step(
        name="dial_verify",
        section="Results › A dial, not a cliff: held-out accuracy 42 → 70 → 79 → 86 → 85 % at m = 0…2 "
                "(notes/training.md, CPU verification)",
        commands=(Command((*CLI, "sweep", "--update", SPLIT_VECTOR, "--multipliers", "0,0.5,1,1.5,2",
                           "--n-pairs", "100", "--output", "{step}/sweep"), threads_option=True),),
        writes=_eval_outputs("sweep"),
        after=("train_split_vector",),
        minutes=4,
        time_source="notes/training.md: the sweep 4 min (1 thread, load average ≈ 10)",
    ),
    Step(
        name="doses",
        section="Comparing methods › Measured: doses, frontier, matched accuracy, manifold (SPLIT vs DiffMean)",
        commands=(Command((*CLI, "compare", "--update", f"split={SPLIT_VECTOR}", "--update", "diffmean=diffmean@15",
                           "--n-pairs", "100", "--n-train", "160", "--n-val", "40", "--train-sweep-pairs", "0",
                           "--multipliers=-1,-0.5,-0.25,0,0.1,0.25,0.5,1,2", "--dose", "norm", "--manifold",
                           "--matched-accuracy", "0.6,0.75", "--output", "{step}/compare"), threads_option=True),),
        writes=_eval_outputs("compare", "frontier.png", "manifold.png"),
        after=("train_split_vector",),
        minutes=31,
        time_source="README: 31 min on a heavily shared 2-core machine",
    ),
    Step(
        name="table3",
        section="Results › Table 3 with the shipped defaults and its dial table (notes/table3.md)",
        commands=(Command(("{python}", "benchmarks/table3.py", "--hparams-dir", "hparams/smollm2",
                           "--multipliers", "0,0.5,1,1.5,2", "--out", "{step}/table3.md"), threads_option=True),),
        writes=("table3.md", "table3.json"),
        minutes=40,
        time_source="measured: about 40 min for the 10 cells (1 thread, two other jobs on the 2-core CPU)",
    ),
    Step(
        name="refine_defaults",
        section="Results › A dial, not a cliff: the CPU refinement of the vector and LoRA defaults "
                "(notes/refine_points.json, notes/refine_defaults.json)",
        commands=(Command(("{python}", "benchmarks/search_defaults.py", "--points", "notes/refine_points.json",
                           "--instructions", "", "--train-instructions", "",
                           "--output", "{step}/refine_defaults.json"), threads_option=True),
                  Command(("{python}", "benchmarks/search_defaults.py", "--points", "notes/refine_points_320.json",
                           "--n-train", "320", "--instructions", "", "--train-instructions", "",
                           "--output", "{step}/refine_defaults_320.json"), threads_option=True)),
        writes=("refine_defaults.json", "refine_defaults_320.json"),
        minutes=32,
        time_source="measured: 21.5 min for the 7 points and 10 min for the two 320-pair runs (1 thread, one "
                    "other job on the 2-core CPU)",
        note="Each point changes the hparams file as it is now; every LoRA point sets steering_factors itself, "
             "so the split_lora.yaml change it led to does not alter a rerun.",
    ),
    Step(
        name="lw_matched",
        section="Results › SPLIT against SFT: local weight, frontier and matched accuracy "
                "(docs/img/frontier_local_weight_split_sft.png)",
        commands=(
            Command((*CLI, "train", "--hparams", "hparams/smollm2/split_local_weight.yaml", "--output", "{step}/split",
                     "--no-progress")),
            Command((*CLI, "train", "--hparams", "hparams/smollm2/sft_local_weight.yaml", "--output", "{step}/sft",
                     "--no-progress")),
            Command((*CLI, "compare", "--update", "split={step}/split/split_local_weight/layer_15.safetensors",
                     "--update", "sft={step}/sft/sft_local_weight/layer_15.safetensors", "--n-pairs", "100",
                     "--n-train", "160", "--n-val", "40", "--train-sweep-pairs", "0",
                     "--multipliers=-1,-0.5,0,0.25,0.5,0.75,1,1.5,2", "--matched-accuracy", "0.75,0.9",
                     "--output", "{step}/compare"), threads_option=True),
        ),
        writes=("split/split_local_weight/layer_15.safetensors", "sft/sft_local_weight/layer_15.safetensors",
                *_eval_outputs("compare", "frontier.png")),
        figures=(("compare/frontier.png", "frontier_local_weight_split_sft.png"),),
        minutes=8,
        time_source="measured: training 2 + 1.2 min, the comparison 4.5 min (1 thread, one other job on the CPU)",
    ),
    Step(
        name="search_defaults",
        section="Results › A dial, not a cliff: the validation search (notes/training.md, notes/search_defaults.json); "
                "Utility at m = 0 (validation figures)",
        commands=(Command(("{python}", "benchmarks/search_defaults.py", "--device", "cuda", "--configs", "16",
                           "--time-budget", "340", "--verify-test", "--output", "{step}/search_defaults.json"),
                          threads_option=True),),
        writes=("search_defaults.json",),
        needs_gpu=True,
        minutes=6,
        time_source="notes/training.md: 312 s after a 29 s model load on one H200",
        note="Stopped by its time budget: how many configurations fit depends on the device's speed.",
    ),
    Step(
        name="editors",
        section="Knowledge editors › The comparison: the editor table and docs/img/editors_smollm2_comparison.png",
        commands=(Command((*EDITOR_COMPARISON, "--n-requests", "10", "--multipliers=-3:3:13",
                           "--easyedit", "{easyedit}", "--output", "{step}/compare")),),
        writes=("compare/report.md", "compare/results.json", "compare/comparison.png"),
        figures=(("compare/comparison.png", "editors_smollm2_comparison.png"),),
        needs_easyedit=True,
        minutes=27,
        time_source="README: 27 min (2 threads, one other job on the 2-core CPU; 16 min idle, previous round)",
    ),
    Step(
        name="editor_tuning",
        section="Knowledge editors › SPLIT's editing settings, chosen on 20 validation requests (notes/editing.md)",
        commands=tuple(
            Command((*EDITOR_COMPARISON, "--skip-requests", "40", "--n-requests", "20", "--multipliers=-3:3:13",
                     "--hparams", "hparams/smollm2/editing/SPLIT.yaml", *extra,
                     *(f"--set=SPLIT.{k}={v}" for k, v in settings.items()),
                     "--easyedit", "{easyedit}", "--output", f"{{step}}/{name}"))
            for name, settings, extra in (
                ("base", {"n_epochs": 25, "lr": 0.005, "margin_penalty_weight": 4.0, "margin_threshold": 3.0},
                 ("--hparams", "hparams/smollm2/editing/FT.yaml")),
                ("t6", {"n_epochs": 25, "lr": 0.005, "margin_penalty_weight": 4.0, "margin_threshold": 6.0}, ()),
                ("t6lr2", {"n_epochs": 40, "lr": 0.002, "margin_penalty_weight": 4.0, "margin_threshold": 6.0}, ()),
                ("t8g8", {"n_epochs": 25, "lr": 0.005, "margin_penalty_weight": 8.0, "margin_threshold": 8.0}, ()),
                ("t6lr1", {"n_epochs": 60, "lr": 0.001, "margin_penalty_weight": 4.0, "margin_threshold": 6.0}, ()),
            )),
        writes=tuple(f"{name}/report.md" for name in ("base", "t6", "t6lr2", "t8g8", "t6lr1")),
        needs_easyedit=True,
        minutes=45,
        time_source="measured: 7, 4.5, 6.5, 8 and 20 min per run (1 thread, two other jobs on the 2-core CPU)",
    ),
    Step(
        name="easyedit_run_spilt",
        section="Inside EasyEdit › run_SPILT.py --method all on SmolLM2 (the 39 min 54 s run)",
        commands=(
            Command((*CLI, "easyedit", "enable", "--site-dir", "{step}/site")),
            Command(("{python}", "-c", WRITE_SITECUSTOMIZE, "{step}/boot", "{step}/site")),
            Command((*CLI, "easyedit", "prepare", "--checkout", "{easyedit}", "--into", "{step}/run",
                     "--model-name", EASYEDIT_MODEL_NAME, "--train-pairs", "24", "--test-pairs", "4",
                     "--dtype", "float32")),
            Command(("{python}", "examples/run_SPILT.py", "--dataset", "psychopathy", "--method", "all",
                     "--model_name", EASYEDIT_MODEL_NAME, "--intervention_method", "vector", "--device", "cpu"),
                    cwd="{step}/run", pythonpath=("{step}/boot",)),
        ),
        writes=("site/easyedit_split_autoregister.pth", "boot/sitecustomize.py",
                "run/EASYEDIT_SPLIT_PREPARED.json", f"run/vectors/{EASYEDIT_MODEL_NAME}"),
        needs_easyedit=True,
        minutes=40,
        time_source="README: 39 min 54 s wall (load average 8–12)",
    ),
    Step(
        name="easyedit_report",
        section="Inside EasyEdit › the four methods compared on 100 held-out pairs (easyedit report)",
        commands=(Command((*CLI, "easyedit", "report", f"{{output}}/easyedit_run_spilt/run/vectors/{EASYEDIT_MODEL_NAME}",
                           "--output", "{step}/report", "--multipliers=-4:4:9")),),
        writes=("report/report.md", "report/results.json", "report/provenance.json", "report/curves.png"),
        after=("easyedit_run_spilt",),
        needs_easyedit=True,
        minutes=12,
        time_source="README: 11 min 33 s (4 × 900 rows on the shared CPU)",
    ),
    Step(
        name="bench_core",
        section="Benchmarks › bench_core.py: hook and merged forward/generate ratios (notes/bench_core.txt)",
        commands=(Command(("{python}", "benchmarks/bench_core.py")),),
        writes=("command1.log",),
        minutes=10,
        time_source="estimate: 9 paired rounds of 6 configurations (forward 4 × 64 tokens, 8 × 16 generated)",
    ),
    Step(
        name="bench_generation",
        section="Benchmarks › bench_generation.py: steered generation ratios (notes/generation.md)",
        commands=(Command(("{python}", "benchmarks/bench_generation.py", "--json", "{step}/bench_generation.json")),),
        writes=("bench_generation.json",),
        minutes=4,
        time_source="notes/generation.md: about 4 minutes on a quiet machine",
    ),
    Step(
        name="bench_sweep",
        section="Benchmarks › bench_sweep.py: sweep rows/s against plain forwards, fit time (notes/bench_sweep.txt)",
        commands=(Command(("{python}", "benchmarks/bench_sweep.py", "--pairs", "12",
                           "--json", "{step}/bench_sweep.json")),),
        writes=("bench_sweep.json",),
        minutes=15,
        time_source="estimate: 2 sets × 12 pairs × 21 multipliers, three ways, at the rates in notes/bench_sweep.txt",
    ),
    Step(
        name="bench_training",
        section="Benchmarks › bench_training.py: training pairs/s and peak memory (notes/training.md)",
        commands=(Command(("{python}", "benchmarks/bench_training.py", "--layer", "15", "--pairs", "32",
                           "--json", "{step}/bench_training.json")),),
        writes=("bench_training.json",),
        minutes=8,
        time_source="estimate: 5 configurations × 32 pairs at the pairs/s in notes/training.md, plus model loads",
    ),
)

STEP_BY_NAME: dict[str, Step] = {s.name: s for s in STEPS}
