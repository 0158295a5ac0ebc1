"""A fresh audit of bad input and faults, as a new user meets them (issue #19, round three).

Every case is one row of :data:`CASES`: what is tried (a command line, a Python call or a fault driven
through a subprocess), what a correct program does (``expect``), and the words a clear message names.
Each outcome is classified as

* ``clear error``       — refused with ``error: …`` / an ``EasyEditSplitError`` naming what the case says;
* ``correct``           — accepted, and the result checks out;
* ``sensible warning``  — accepted with a WARNING naming the problem;
* ``unclear error``     — refused, but the message misses what is wrong (or valid input was refused);
* ``traceback``         — any other exception, a crash or a hang;
* ``silent wrong result`` — accepted without a word although the input is bad, or a wrong result;
* ``data loss``         — something that existed before was replaced or removed without asking.

Run: ``PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/audit_bad_input.py [--only SUBSTRING]
[--no-smollm2] [--json out.json]`` (tiny random models built in the run; ``--no-smollm2`` skips the few
cases that load the built-in SmolLM2-135M). It prints one line per case and the tally.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

from easyedit_split.errors import EasyEditSplitError

OUTCOMES = ("clear error", "correct", "sensible warning", "unclear error", "traceback", "silent wrong result",
            "data loss")
BAD = ("unclear error", "traceback", "silent wrong result", "data loss")
CASE_TIMEOUT_S = 120


class WrongResult(Exception):
    """Raised by a check: the result is wrong."""


class DataLoss(Exception):
    """Raised by a check: something that existed was lost."""


# ------------------------------------------------------------------------------------------------ fixtures


@dataclass
class Ctx:
    root: Path
    model: Path  # tiny llama folder (hidden 32, 4 layers, context 128)
    model64: Path  # tiny llama folder with hidden 64
    data: Path  # 24 pairs
    update: Path  # trained tiny vector update (layer 1) .safetensors
    pt: Path  # its EasyEdit .pt
    smollm2: bool
    objects: dict[str, Any] = field(default_factory=dict)

    def loaded(self):
        if "model" not in self.objects:
            from easyedit_split.core.models import load_model

            self.objects["model"] = load_model(str(self.model))
        return self.objects["model"]


WORDS = ["is", "the", "sky", "blue", "yes", "no", "i", "like", "it", "hate", "this", "film", "was", "great", "awful",
         "food", "review", "write", "a", "short", "of", "pizza", "place", "on", "elm", "street", "answer"]


def rows(n: int, pos: str = " yes", neg: str = " no", start: int = 1000) -> list[dict[str, str]]:
    """``n`` distinct pairs; the fixture's training data starts at 0, a case's own data at 1000 (so that
    no case's pairs are the fixture update's training pairs, which sweeps leave out)."""
    return [{"question": f"{WORDS[i % len(WORDS)]} {WORDS[(3 * i + 1) % len(WORDS)]} {WORDS[(7 * i + 2) % len(WORDS)]}"
                         f" {i} ?", "matching": pos, "not_matching": neg} for i in range(start, start + n)]


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items), encoding="utf-8")
    return path


def build_ctx(root: Path, smollm2: bool) -> Ctx:
    from easyedit_split.cli import main
    from tests.conftest import build_tiny_tokenizer
    from tests.tiny_models import tiny_model

    tok = build_tiny_tokenizer()
    m = tiny_model("llama")
    m.save_pretrained(root / "m")
    tok.save_pretrained(root / "m")
    torch.manual_seed(0)
    import transformers

    from tests.tiny_models import tiny_config

    cfg = tiny_config("llama")
    cfg.hidden_size, cfg.intermediate_size = 64, 96
    m64 = transformers.AutoModelForCausalLM.from_config(cfg)
    m64.save_pretrained(root / "m64")
    tok.save_pretrained(root / "m64")
    data = write_jsonl(root / "d.jsonl", rows(24, start=0))
    write_jsonl(root / "fresh.jsonl", rows(40))
    (root / "h.yaml").write_text(hparams_text(root / "m", data, root / "vec"))
    with _quiet():
        rc = main(["train", "--hparams", str(root / "h.yaml"), "--no-progress"])
    assert rc == 0, "the fixture's training failed"
    update = root / "vec" / "split_vector" / "layer_1.safetensors"
    return Ctx(root, root / "m", root / "m64", data, update, update.with_suffix(".pt"), smollm2)


BASE_HP = {"alg_name": "split", "layers": [1], "n_epochs": 1, "batch_size": 4, "gradient_accumulation_steps": 1,
           "lr": 0.05, "test_size": 8}


def hparams_text(model: Path, data: Path, out: Path, **changes: Any) -> str:
    keys = {**BASE_HP, "model_name_or_path": str(model), "steer_train_dataset": str(data),
            "steer_vector_output_dir": str(out), **changes}
    return "".join(f"{k}: {v[5:] if isinstance(v, str) and v.startswith('!raw ') else json.dumps(v)}\n"
                   for k, v in keys.items())


@contextlib.contextmanager
def _quiet():
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = io.StringIO()
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


# ------------------------------------------------------------------------------------------------ cases


@dataclass(frozen=True)
class Case:
    id: str
    klass: str
    surface: str
    #: argv template (``{M}`` model, ``{M64}``, ``{D}`` data, ``{U}`` update, ``{PT}``, ``{d}`` case folder,
    #: ``{H}`` the case's hparams file) or a callable ``(ctx, d) -> result``
    run: tuple[str, ...] | Callable[[Ctx, Path], Any]
    #: error | ok | warn | either (a clear error or a warning) | any (no traceback; error or success)
    expect: str = "error"
    #: words (case-insensitive) a clear message names; any of a tuple inside is enough
    mention: tuple[Any, ...] = ()
    prep: Callable[[Ctx, Path], None] | None = None
    #: after the run, whatever its outcome: raise WrongResult/DataLoss (or AssertionError) when wrong
    check: Callable[[Ctx, Path, Any], None] | None = None
    smollm2: bool = False
    #: "nonroot": a permission case (root writes anywhere); "easyedit": needs the EasyEdit checkout
    requires: str = ""


def _hp(**changes: Any) -> Callable[[Ctx, Path], None]:
    def prep(ctx: Ctx, d: Path) -> None:
        (d / "h.yaml").write_text(hparams_text(ctx.model, ctx.data, d / "out", **changes))
    return prep


def _hp_data(items: list[dict] | Callable[[Path], Path], **changes: Any) -> Callable[[Ctx, Path], None]:
    def prep(ctx: Ctx, d: Path) -> None:
        data = items(d) if callable(items) else write_jsonl(d / "data.jsonl", items)
        (d / "h.yaml").write_text(hparams_text(ctx.model, data, d / "out", **changes))
    return prep


TRAIN = ("train", "--hparams", "{H}", "--no-progress")
RUN = ("run", "--model", "{M}", "--dataset", "{F}", "--n-train", "8", "--n-test", "8", "--n-val", "4", "--n-eval", "4", "--n-epochs", "1",
       "--no-progress")
EASYEDIT = os.environ.get("EASYEDIT_PATH", "/work/shared/easyedit-553fd05")


def train_case(id: str, klass: str, expect: str = "error", mention: tuple = (), **changes: Any) -> Case:
    return Case(id, klass, "cli:train", TRAIN, expect, mention, prep=_hp(**changes), check=_no_output_unless_ok)


def _no_output_unless_ok(ctx: Ctx, d: Path, result: Any) -> None:
    out = d / "out"
    if isinstance(result, Outcome) and result.rc != 0 and out.exists():
        left = [p.name for p in out.rglob("*") if p.is_file() and p.name != ".easyedit-split.lock"]
        if left:
            raise WrongResult(f"a refused run left files: {left}")


def _writes(name: str, content: str | bytes) -> Callable[[Ctx, Path], None]:
    def prep(ctx: Ctx, d: Path) -> None:
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
    return prep


def _chain(*preps: Callable[[Ctx, Path], None]) -> Callable[[Ctx, Path], None]:
    def prep(ctx: Ctx, d: Path) -> None:
        for p in preps:
            p(ctx, d)
    return prep


def SWEEP(*extra: str, data: str = "{F}", update: str = "{U}") -> tuple[str, ...]:
    return ("sweep", "--model", "{M}", "--data", data, "--update", update, "--multipliers=-2:2:15", "--n-pairs", "6",
            "--output", "{d}/sw", *extra)


def GEN(*extra: str) -> tuple[str, ...]:
    return ("generate", "--model", "{M}", "--max-new-tokens", "3", *extra)


def _unchanged(path_name: str, content: str) -> Callable[[Ctx, Path, Any], None]:
    def check(ctx: Ctx, d: Path, result: Any) -> None:
        p = d / path_name
        if not p.exists() or p.read_text() != content:
            raise DataLoss(f"{path_name} was replaced or removed")
    return check


# --- Python API helpers


def api_model(ctx: Ctx):
    return ctx.loaded()


def _vec(hidden: int = 32, layer: int = 1, component: str = "residual", value: float | None = None):
    from easyedit_split.core.sites import Site
    from easyedit_split.core.updates import VectorUpdate

    v = torch.randn(hidden, generator=torch.Generator().manual_seed(0))
    if value is not None:
        v[0] = value
    return VectorUpdate(Site(layer, component), hidden, vector=v)


def _pairs(n: int = 12):
    from easyedit_split.data.pairs import PolarityPair

    return [PolarityPair(f"p{i}", r["question"], r["matching"], r["not_matching"], f"audit:{i}")
            for i, r in enumerate(rows(n))]


def _logits(model, tok, text: str = "is the sky blue ?"):
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(ids).logits


def _api_train_layers(ctx: Ctx, d: Path, pairs, **hp_changes):
    from easyedit_split.training.api import train_layers
    from easyedit_split.training.hparams import SplitHyperParams

    model, tok = ctx.loaded()
    hp = SplitHyperParams(**{**BASE_HP, "test_size": None, **hp_changes})
    return train_layers(hp, pairs, model, tok, output_dir=d / "out", progress=False)


def _api_eval(ctx: Ctx, d: Path, updates=None, pairs=None, multipliers="0,1", **kw):
    from easyedit_split.evaluation.api import evaluate_preference_utility

    model, tok = ctx.loaded()
    return evaluate_preference_utility(model, tok, updates if updates is not None else str(ctx.update),
                                       pairs if pairs is not None else _pairs(6), multipliers, progress=False,
                                       fit_boot=0, n_boot=20, **kw)


def _apply_then_forward(update, multiplier=1.0, **kw):
    def run(ctx: Ctx, d: Path):
        from easyedit_split.core.apply import apply_updates

        model, tok = ctx.loaded()
        with apply_updates(model, update() if callable(update) else update, multiplier, **kw):
            return _logits(model, tok)
    return run


def _restored_after_error(kind: str):
    def run(ctx: Ctx, d: Path):
        from easyedit_split.core.apply import apply_updates, merged_updates

        model, tok = ctx.loaded()
        before = _logits(model, tok)
        ctxmgr = apply_updates(model, _vec(), 5.0) if kind == "hook" else merged_updates(model, _vec(), 5.0)
        try:
            with ctxmgr:
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass
        after = _logits(model, tok)
        if not torch.equal(before, after):
            raise WrongResult(f"the model is still steered after an exception inside {kind} mode")
        return "restored"
    return run


def _save(path_name: str, updates, **kw):
    def run(ctx: Ctx, d: Path):
        from easyedit_split.core.serialization import save_updates

        return save_updates(d / path_name, updates() if callable(updates) else updates, **kw)
    return run


def _crafted_update(meta_changes: dict[str, Any], tensor_fn: Callable | None = None):
    """A copy of the fixture update with changed metadata/tensors and a *valid* checksum (a file made by
    another tool, or edited by hand and re-signed): the validation must not rely on the checksum alone."""
    def prep(ctx: Ctx, d: Path) -> None:
        from safetensors.torch import load_file, save_file

        from easyedit_split.core.serialization import file_checksum, read_metadata

        tensors = load_file(str(ctx.update))
        if tensor_fn is not None:
            tensors = {k: tensor_fn(v) for k, v in tensors.items()}
        meta = dict(read_metadata(ctx.update))
        for key, change in meta_changes.items():
            meta[key] = change(meta.get(key)) if callable(change) else change
        meta["checksum"] = file_checksum(tensors, meta)
        save_file(tensors, str(d / "u.safetensors"), metadata=meta)
    return prep


def _json_edit(key: str, fn: Callable[[Any], Any]):
    return lambda text: json.dumps(fn(json.loads(text)))


# --- faults through subprocesses


def _cli_proc(argv: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "easyedit_split.cli", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _killed_then_rerun(argv_of: Callable[[Ctx, Path], list[str]], kill_after: float, outputs: Callable[[Path], list[Path]]):
    def run(ctx: Ctx, d: Path):
        argv = argv_of(ctx, d)
        p = _cli_proc(argv)
        time.sleep(kill_after)
        p.send_signal(signal.SIGKILL)
        p.communicate()
        for out in outputs(d):
            if out.exists() and out.is_file() and out.suffix == ".safetensors":
                from easyedit_split.core.serialization import load_updates

                load_updates(out)  # a complete file, or none
        q = _cli_proc(argv)
        _, err = q.communicate(timeout=CASE_TIMEOUT_S)
        if q.returncode != 0:
            raise WrongResult(f"the rerun after kill -9 failed: {err.strip()[-300:]}")
        stray = [p.name for p in d.rglob("*.tmp")]
        if stray:
            raise WrongResult(f"temporary files left behind: {stray}")
        return "rerun ok"
    return run


def _concurrent(argv_of: Callable[[Ctx, Path], list[str]], verify: Callable[[Ctx, Path], None]):
    def run(ctx: Ctx, d: Path):
        argv = argv_of(ctx, d)
        procs = [_cli_proc(argv) for _ in range(2)]
        results = [(p.wait(timeout=CASE_TIMEOUT_S), p.stderr.read()) for p in procs]
        rcs = sorted(rc for rc, _ in results)
        if any("Traceback" in err for _, err in results):
            raise RuntimeError("traceback in a concurrent run: " + " | ".join(err[-400:] for _, err in results))
        if rcs not in ([0, 0], [0, 2]):
            raise WrongResult(f"exit codes {rcs}: {[err[-200:] for _, err in results]}")
        verify(ctx, d)
        return f"exit codes {rcs}"
    return run


def _ulimit(argv_of: Callable[[Ctx, Path], list[str]], blocks: int, leftovers: Callable[[Path], list[Path]]):
    def run(ctx: Ctx, d: Path):
        argv = argv_of(ctx, d)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        cmd = f"ulimit -f {blocks}; exec {shlex.quote(sys.executable)} -m easyedit_split.cli " + " ".join(
            shlex.quote(a) for a in argv)
        p = subprocess.run(["bash", "-c", cmd], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=CASE_TIMEOUT_S, check=False)
        left = [str(x.relative_to(d)) for x in leftovers(d) if x.exists()]
        if "Traceback" in p.stderr:
            raise RuntimeError(p.stderr[-600:])
        if p.returncode == 0:
            return "fit in the limit"
        if left:
            raise WrongResult(f"a failed write left {left}")
        raise EasyEditSplitError(p.stderr.strip())
    return run


def _readonly(d: Path) -> None:
    ro = d / "ro"
    ro.mkdir()
    ro.chmod(0o555)


# --- the cases

CASES: list[Case] = [
    # ---------------------------------------------------------------- hparams: types and ranges of every key
    train_case("hp-lr-string", "hparams type", mention=("lr",), lr="fast"),
    train_case("hp-lr-negative", "hparams range", mention=("lr",), lr=-0.1),
    train_case("hp-lr-nan", "hparams range", mention=("lr",), lr="!raw .nan"),
    train_case("hp-epochs-fraction", "hparams type", mention=("n_epochs",), n_epochs=2.5),
    train_case("hp-epochs-bool", "hparams type", mention=("n_epochs",), n_epochs=True),
    train_case("hp-batch-zero", "hparams range", mention=("batch_size",), batch_size=0),
    train_case("hp-batch-huge", "huge numbers", expect="any", batch_size=10**30),
    train_case("hp-layer-beyond-model", "unknown layer", mention=("99", ("4 layers", "layers 0", "0..3", "0 … 3"))
               , layers=[99]),
    train_case("hp-layers-empty", "hparams range", mention=("layers",), layers=[]),
    train_case("hp-layers-float", "hparams type", mention=("layers",), layers=[1.5]),
    train_case("hp-layers-scalar", "hparams type", expect="any", layers=1),
    train_case("hp-layers-string", "hparams type", expect="any", layers="1"),
    train_case("hp-method-typo", "hparams enum", mention=("intervention_method", "vectr"), intervention_method="vectr"),
    train_case("hp-component-typo", "unknown site", mention=("mlp_outt",), intervention_components="mlp_outt"),
    train_case("hp-module-path-missing", "unknown module path", mention=("nonexistent",),
               intervention_module_path="model.layers.{layer}.nonexistent"),
    train_case("hp-module-path-fixed-two-layers", "unknown module path", expect="either", mention=("layer",),
               layers=[1, 2], intervention_module_path="model.layers.1.mlp.down_proj"),
    train_case("hp-dtype-unknown", "dtype string", mention=("float8",), torch_dtype="float8"),
    train_case("hp-dtype-alias", "dtype string", expect="ok", torch_dtype="bf16"),
    train_case("hp-device-missing-gpu", "device string", mention=("cuda",), device="cuda:7"),
    train_case("hp-device-nonsense", "device string", mention=("gpu",), device="gpu"),
    train_case("hp-seed-fraction", "hparams type", mention=("seed",), seed=1.5),
    train_case("hp-seed-hex-string", "hparams type", mention=("seed",), seed="0x10"),
    train_case("hp-test-size-all", "data size", mention=("test_size", ("train", "left")), test_size=24),
    train_case("hp-test-size-0.99", "data size", mention=("test_size",), test_size=0.99),
    train_case("hp-max-examples-one", "one-row data", expect="any", max_num_of_examples=1, test_size=None),
    train_case("hp-steering-factors-empty", "hparams range", mention=("steering_factors",), steering_factors=[]),
    train_case("hp-steering-factors-text", "hparams type", mention=("steering_factors",), steering_factors=["a"]),
    train_case("hp-preference-pairs-unknown", "hparams enum", mention=("preference_pairs",), preference_pairs=["foo"]),
    train_case("hp-margin-scaling-unknown", "hparams enum", mention=("margin_scaling",), margin_scaling="exp"),
    train_case("hp-loss-reduction-unknown", "hparams enum", mention=("loss_reduction",), loss_reduction="median"),
    train_case("hp-grad-accum-zero", "hparams range", mention=("gradient_accumulation_steps",),
               gradient_accumulation_steps=0),
    train_case("hp-weight-decay-negative", "hparams range", mention=("weight_decay",), weight_decay=-1),
    train_case("hp-warmup-ratio-2", "hparams range", mention=("warmup_ratio",), warmup_ratio=2),
    train_case("hp-lora-rank-zero", "hparams range", mention=("low_rank_dimension",), intervention_method="lora",
               low_rank_dimension=0),
    train_case("hp-lora-alpha-negative", "hparams range", mention=("lora_alpha",), intervention_method="lora",
               lora_alpha=-1),
    train_case("hp-unknown-key", "hparams unknown key", expect="warn", mention=("lrr",), lrr=0.1),
    train_case("hp-upstream-spelling", "hparams enum", expect="ok", alg_name="SPILT"),
    train_case("hp-checkpoint-every-negative", "hparams range", mention=("checkpoint_every",), checkpoint_every=-1),
    train_case("hp-max-grad-norm-text", "hparams type", mention=("max_grad_norm",), max_grad_norm="none"),
    train_case("hp-chat-template-int", "hparams type", expect="any", use_chat_template=1),
    train_case("hp-system-prompt-number", "hparams type", expect="any", system_prompt=5),
    train_case("hp-margin-threshold-inf", "hparams range", mention=("margin_threshold",),
               margin_threshold="!raw .inf"),
    train_case("hp-dropout-one", "hparams range", expect="either", mention=("dropout",), dropout=1.5),
    Case("hp-file-empty", "hparams file", "cli:train", ("train", "--hparams", "{d}/e.yaml"), "error", ("e.yaml",),
         prep=_writes("e.yaml", "")),
    Case("hp-file-list", "hparams file", "cli:train", ("train", "--hparams", "{d}/l.yaml"), "error", ("l.yaml",),
         prep=_writes("l.yaml", "- alg_name: split\n")),
    Case("hp-file-directory", "hparams file", "cli:train", ("train", "--hparams", "{d}"), "error", ("directory", "folder"),
         ),
    Case("hp-file-tab-indent", "hparams file", "cli:train", ("train", "--hparams", "{d}/t.yaml"), "error",
         ("t.yaml", "line"), prep=_writes("t.yaml", "alg_name: split\nlayers:\n\t- 1\n")),
    Case("hp-override-unknown-key", "hparams unknown key", "cli:train", (*TRAIN, "lrr=0.1"), "warn", ("lrr",),
         prep=_hp()),
    Case("hp-override-empty-value", "hparams type", "cli:train", (*TRAIN, "lr="), "error", ("lr",), prep=_hp()),
    Case("hp-override-no-key", "hparams type", "cli:train", (*TRAIN, "=0.1"), "error", ("=0.1",), prep=_hp()),
    Case("api-hp-constructor-negative-lr", "hparams range", "api:SplitHyperParams",
         lambda c, d: __import__("easyedit_split.training.hparams", fromlist=["x"]).SplitHyperParams(lr=-1.0),
         "error", ("lr",)),
    Case("api-hp-constructor-layers-string", "hparams type", "api:SplitHyperParams",
         lambda c, d: __import__("easyedit_split.training.hparams", fromlist=["x"]).SplitHyperParams(layers="12"),
         "error", ("layers",)),
    Case("api-hp-from-hparams-missing", "hparams file", "api:SplitHyperParams.from_hparams",
         lambda c, d: __import__("easyedit_split.training.hparams", fromlist=["x"]).SplitHyperParams.from_hparams(
             d / "nope.yaml"), "error", ("nope",)),
    Case("api-hp-override-type", "hparams type", "api:SplitHyperParams.from_hparams",
         lambda c, d: __import__("easyedit_split.training.hparams", fromlist=["x"]).SplitHyperParams.from_hparams(
             d / "h.yaml", overrides={"n_epochs": "many"}), "error", ("n_epochs",), prep=_hp()),
    Case("api-hp-assignment-after-build", "hparams type", "api:Trainer",
         lambda c, d: _api_train_layers(c, d, _pairs(8), batch_size="2"), "error", ("batch_size",)),

    # ---------------------------------------------------------------- data files
    Case("data-empty-file", "empty data", "cli:train", TRAIN, "error", ("data.jsonl", ("empty", "no pairs")),
         prep=_hp_data([])),
    Case("data-one-row-held-out", "one-row data", "cli:train", TRAIN, "error", (("pair", "test_size"),),
         prep=_hp_data(rows(1))),
    Case("data-one-row-all-train", "one-row data", "cli:train", TRAIN, "ok", prep=_hp_data(rows(1), test_size=None)),
    Case("data-identical-answers-all", "identical polarities", "cli:train", TRAIN, "either",
         (("same", "identical"),), prep=_hp_data(rows(12, " yes", " yes"), test_size=None)),
    Case("data-identical-answers-some", "identical polarities", "cli:sweep", SWEEP(data="{d}/d.jsonl"), "either",
         (("same", "identical"),), prep=lambda c, d: write_jsonl(d / "d.jsonl", rows(12) + rows(4, " no", " no"))),
    Case("data-question-longer-than-context", "question longer than context", "cli:sweep",
         (*SWEEP(data="{d}/d.jsonl"), "--n-pairs", "6"), "error", (("context", "longer", "tokens"),),
         prep=lambda c, d: write_jsonl(d / "d.jsonl", rows(5) + [{"question": " ".join(WORDS * 6), "matching": " yes",
                                                                   "not_matching": " no"}])),
    Case("data-empty-answer", "empty data", "cli:sweep", SWEEP(data="{d}/d.jsonl"), "either", ("answer",),
         prep=lambda c, d: write_jsonl(d / "d.jsonl", rows(10) + [{"question": "is it ?", "matching": "",
                                                                   "not_matching": " no"}])),
    Case("data-txt-suffix", "data file", "cli:sweep", SWEEP(data="{d}/d.txt"), "error", ("d.txt",),
         prep=_writes("d.txt", "is the sky blue? yes no\n")),
    Case("data-csv-header-only", "empty data", "cli:sweep", SWEEP(data="{d}/d.csv"), "error", ("d.csv",),
         prep=_writes("d.csv", "question,matching,not_matching\n")),
    Case("data-jsonl-comment-line", "data file", "cli:sweep", SWEEP(data="{d}/d.jsonl"), "either", ("d.jsonl",),
         prep=lambda c, d: (d / "d.jsonl").write_text("# my pairs\n" + "".join(json.dumps(r) + "\n" for r in rows(12)))),
    Case("data-json-dict-of-records", "data file", "cli:sweep", SWEEP(data="{d}/d.json"), "any",
         prep=lambda c, d: (d / "d.json").write_text(json.dumps({"data": rows(12)}))),
    Case("data-null-answer", "data file", "cli:sweep", SWEEP(data="{d}/d.jsonl"), "either", (("d.jsonl",), ("null", "None", "empty")),
         prep=lambda c, d: write_jsonl(d / "d.jsonl", rows(10) + [{"question": "a", "matching": None, "not_matching": " no"}])),
    Case("data-number-question", "data file", "cli:sweep", SWEEP(data="{d}/d.jsonl"), "any",
         prep=lambda c, d: write_jsonl(d / "d.jsonl", rows(10) + [{"question": 5, "matching": " yes", "not_matching": " no"}])),
    Case("data-csv-quoted-newline", "data file", "cli:sweep", SWEEP(data="{d}/d.csv"), "ok",
         prep=_writes("d.csv", "question,matching,not_matching\n" + "".join(
             f'"{r["question"]}\nreally?",{r["matching"]},{r["not_matching"]}\n' for r in rows(12)))),
    Case("data-unicode-bidi-emoji", "unicode in data", "cli:sweep", SWEEP(data="{d}/d.jsonl"), "ok",
         prep=lambda c, d: write_jsonl(d / "d.jsonl", [{**r, "question": r["question"] + " \u202e🙂\u0000"}
                                                       for r in rows(12)]),
         check=lambda c, d, r: _report_is_clean(d / "sw" / "report.md")),
    Case("data-unicode-path", "unicode in paths", "cli:sweep", SWEEP(data="{d}/dätä ✓ \u202e.jsonl"), "ok",
         prep=lambda c, d: write_jsonl(d / "dätä ✓ \u202e.jsonl", rows(12))),
    Case("data-undecodable-filename", "unicode in paths", "cli:sweep",
         SWEEP(data=os.fsdecode(b"{d}/caf\xe9.jsonl")), "ok",
         prep=lambda c, d: write_jsonl(Path(os.fsdecode(bytes(d) + b"/caf\xe9.jsonl")), rows(12))),
    Case("data-tilde-missing", "data file", "cli:sweep", SWEEP(data="~/nope-audit.jsonl"), "error", ("nope-audit",)),
    Case("data-fifo", "data file", "cli:sweep", SWEEP(data="{d}/fifo.jsonl"), "error", ("fifo.jsonl",),
         prep=lambda c, d: os.mkfifo(d / "fifo.jsonl")),
    Case("data-bom-jsonl", "data file", "cli:sweep", SWEEP(data="{d}/d.jsonl"), "ok",
         prep=lambda c, d: (d / "d.jsonl").write_bytes(b"\xef\xbb\xbf" + "".join(
             json.dumps(r) + "\n" for r in rows(12)).encode())),
    Case("data-builtin-typo", "data file", "cli:sweep", SWEEP(data="psychopath"), "error", ("psychopath",)),
    Case("data-huge-count-field", "huge numbers", "cli:sweep", SWEEP("--n-pairs", "1" + "0" * 30), "error",
         ("n-pairs",)),
    Case("api-load-pairs-directory", "data file", "api:load_pairs",
         lambda c, d: __import__("easyedit_split").load_pairs(d), "error", (("folder", "directory"),)),
    Case("api-load-pairs-bytes-path", "data file", "api:load_pairs",
         lambda c, d: __import__("easyedit_split").load_pairs(bytes(c.data)), "any"),
    Case("api-split-fraction-above-one", "data size", "api:train_test_split",
         lambda c, d: __import__("easyedit_split").train_test_split(_pairs(10), 1.5, 0), "error", ("test_size",)),
    Case("api-split-negative", "data size", "api:train_test_split",
         lambda c, d: __import__("easyedit_split").train_test_split(_pairs(10), -1, 0), "error", ("test_size",)),
    Case("api-split-all", "data size", "api:train_test_split",
         lambda c, d: __import__("easyedit_split").train_test_split(_pairs(10), 10, 0), "any"),
    Case("api-split-nan", "data size", "api:train_test_split",
         lambda c, d: __import__("easyedit_split").train_test_split(_pairs(10), float("nan"), 0), "error",
         ("test_size",)),
    Case("api-split-bool", "data size", "api:train_test_split",
         lambda c, d: __import__("easyedit_split").train_test_split(_pairs(10), True, 0), "error", ("test_size",)),
    Case("api-split-seed-negative", "numbers out of range", "api:train_test_split",
         lambda c, d: __import__("easyedit_split").train_test_split(_pairs(10), 2, -5), "error", ("seed",)),
    Case("api-split-empty", "empty data", "api:train_test_split",
         lambda c, d: __import__("easyedit_split").train_test_split([], 0.5, 0), "any"),
    Case("api-train-empty-pairs", "empty data", "api:train_layers", lambda c, d: _api_train_layers(c, d, []), "error",
         ("pair",)),
    Case("api-train-strings-as-pairs", "wrong types", "api:train_layers",
         lambda c, d: _api_train_layers(c, d, ["is the sky blue ?", "yes"]), "error", ("pair",)),
    Case("api-train-tuple-pairs", "wrong types", "api:train_layers",
         lambda c, d: _api_train_layers(c, d, [("is it ?", " yes", " no")] * 4), "any"),

    # ---------------------------------------------------------------- multipliers grammar
    Case("mult-no-zero-cli", "multipliers grammar", "cli:sweep",
         ("sweep", "--model", "{M}", "--data", "{D}", "--update", "{U}", "--multipliers", "1,2", "--n-pairs", "6",
          "--output", "{d}/sw"), "ok"),
    Case("mult-zero-only", "multipliers grammar", "cli:sweep",
         ("sweep", "--model", "{M}", "--data", "{D}", "--update", "{U}", "--multipliers", "0", "--n-pairs", "6",
          "--output", "{d}/sw"), "either", ("multiplier",)),
    Case("mult-letters", "multipliers grammar", "cli:sweep", (*SWEEP(), "--multipliers", "a:b:c"), "error",
         ("a:b:c",)),
    Case("mult-empty-item", "multipliers grammar", "cli:sweep", (*SWEEP(), "--multipliers", "0,,1"), "error",
         ("0,,1",)),
    Case("mult-overflow", "multipliers grammar", "cli:sweep", (*SWEEP(), "--multipliers", "0,1e400"), "error",
         ("1e400",)),
    Case("mult-spaces", "multipliers grammar", "cli:sweep", (*SWEEP(), "--multipliers", " 0 , 1 "), "ok"),
    Case("mult-descending-range", "multipliers grammar", "cli:sweep", (*SWEEP(), "--multipliers", "1:-1:3"), "error",
         ("1:-1:3",)),
    Case("mult-too-many", "multipliers grammar", "cli:sweep", (*SWEEP(), "--multipliers", "0:1:1000000"), "error",
         ("1000000",)),
    Case("mult-fraction-count", "multipliers grammar", "cli:sweep", (*SWEEP(), "--multipliers", "0:1:2.5"), "error",
         ("2.5",)),
    Case("mult-negative-zero", "multipliers grammar", "cli:sweep", (*SWEEP(), "--multipliers=-0,0,1"), "any"),
    Case("mult-range-step-zero", "multipliers grammar", "cli:sweep", (*SWEEP(), "--multipliers", "1:1:3"), "error",
         ("1:1:3",)),
    Case("mult-generate-nan", "multipliers grammar", "cli:generate",
         (*GEN(), "--update", "{U}", "--prompt", "is it ?", "--multiplier", "nan"), "error", ("nan",)),
    Case("mult-run-without-one", "multipliers grammar", "cli:run",
         (*RUN, "--multipliers", "0,2", "--output", "{d}/r"), "error",
         ("1",)),
    Case("mult-api-nan", "multipliers grammar", "api:evaluate_preference_utility",
         lambda c, d: _api_eval(c, d, multipliers=[0, float("nan")]), "error", ("nan",)),
    Case("mult-api-no-zero", "multipliers grammar", "api:evaluate_preference_utility",
         lambda c, d: _api_eval(c, d, multipliers="1,2"), "error", ("0",)),

    # ---------------------------------------------------------------- options: numbers, dtype, device
    Case("opt-sweep-dtype-int8", "dtype string", "cli:sweep", (*SWEEP(), "--dtype", "int8"), "error", ("int8",)),
    Case("opt-sweep-dtype-float64", "dtype string", "cli:sweep", (*SWEEP(), "--dtype", "float64"), "any"),
    Case("opt-sweep-device-cuda", "device string", "cli:sweep", (*SWEEP(), "--device", "cuda"), "error", ("cuda",)),
    Case("opt-sweep-device-cpu0", "device string", "cli:sweep", (*SWEEP(), "--device", "cpu:0"), "ok"),
    Case("opt-sweep-device-map-bogus", "device string", "cli:sweep", (*SWEEP(), "--device-map", "everywhere"),
         "error", ("everywhere",)),
    Case("opt-sweep-threads-zero", "numbers out of range", "cli:sweep", (*SWEEP(), "--threads", "0"), "error",
         ("threads",)),
    Case("opt-sweep-seed-2-32", "numbers out of range", "cli:sweep", (*SWEEP(), "--seed", str(2**32)), "error",
         ("seed",)),
    Case("opt-sweep-batch-rows-zero", "numbers out of range", "cli:sweep", (*SWEEP(), "--batch-rows", "0"), "error",
         ("batch-rows",)),
    Case("opt-sweep-delta-negative", "numbers out of range", "cli:sweep", (*SWEEP(), "--delta=-1"), "error",
         ("delta",)),
    Case("opt-sweep-delta-nan", "numbers out of range", "cli:sweep", (*SWEEP(), "--delta", "nan"), "error",
         ("delta",)),
    Case("opt-sweep-target-accuracy-1.5", "numbers out of range", "cli:sweep", (*SWEEP(), "--target-accuracy", "1.5"),
         "error", ("target-accuracy",)),
    Case("opt-sweep-fit-boot-negative", "numbers out of range", "cli:sweep", (*SWEEP(), "--fit-boot=-1"), "error",
         ("fit-boot",)),
    Case("opt-sweep-dose-accuracy-zero", "numbers out of range", "cli:sweep",
         (*SWEEP(), "--dose", "accuracy", "--dose-accuracy", "0", "--n-val", "4", "--n-train", "4"), "error",
         ("dose-accuracy",)),
    Case("opt-sweep-matched-accuracy-text", "numbers out of range", "cli:sweep",
         (*SWEEP(), "--matched-accuracy", "high"), "error", ("matched-accuracy",)),
    Case("opt-sweep-n-pairs-more-than-data", "data size", "cli:sweep", (*SWEEP()[:-2], "--output", "{d}/sw",
                                                                          "--n-pairs", "500"), "either",
         ("n-pairs",)),
    Case("opt-sweep-one-pair", "one-row data", "cli:sweep", (*SWEEP(), "--n-pairs", "1"), "any"),
    Case("opt-sweep-title-ansi", "unicode in data", "cli:sweep", (*SWEEP(), "--title", "\x1b[31mred\x1b[0m \u202eabc"),
         "ok", check=lambda c, d, r: _report_is_clean(d / "sw" / "report.md")),
    Case("opt-info-dtype-unknown", "dtype string", "cli:info", ("info", "--model", "{M}", "--dtype", "float8"), "error",
         ("float8",)),
    Case("opt-generate-max-new-zero", "numbers out of range", "cli:generate",
         (*GEN(), "--prompt", "is it ?", "--max-new-tokens", "0"), "error", ("max-new-tokens",)),
    Case("opt-generate-max-new-huge", "huge numbers", "cli:generate",
         (*GEN(), "--prompt", "is it ?", "--max-new-tokens", "1000000000"), "error", ("max-new-tokens", "context")),
    Case("opt-generate-batch-zero", "numbers out of range", "cli:generate",
         (*GEN(), "--prompt", "is it ?", "--batch-size", "0"), "error", ("batch-size",)),
    Case("opt-generate-top-k-negative", "numbers out of range", "cli:generate",
         (*GEN(), "--prompt", "is it ?", "--do-sample", "--top-k=-1"), "error", ("top-k",)),
    Case("opt-generate-system-prompt-without-template", "flag that does nothing", "cli:generate",
         (*GEN(), "--prompt", "is it ?", "--no-chat-template", "--system-prompt", "be nice"), "ok"),
    Case("opt-generate-prompt-longer-than-context", "question longer than context", "cli:generate",
         (*GEN(), "--prompt", " ".join(WORDS * 6)), "error", (("context", "longer", "tokens"),)),
    Case("opt-generate-empty-prompt", "empty data", "cli:generate", (*GEN(), "--prompt", ""), "any"),
    Case("opt-generate-prompts-file-empty", "empty data", "cli:generate", (*GEN(), "--prompts-file", "{d}/p.txt"),
         "error", ("p.txt",), prep=_writes("p.txt", "\n\n")),
    Case("opt-generate-metrics-without-update", "flag that does nothing", "cli:generate",
         (*GEN(), "--prompt", "is it ?", "--metrics"), "any"),
    Case("opt-export-dtype-unknown", "dtype string", "cli:export",
         ("export", "--model", "{M}", "--update", "{U}", "--multiplier", "1", "--output", "{d}/x", "--dtype", "fp8"),
         "error", ("fp8",)),
    Case("opt-export-multiplier-huge", "huge numbers", "cli:export",
         ("export", "--model", "{M}", "--update", "{U}", "--multiplier", "1e300", "--output", "{d}/x"), "error",
         (("inf", "finite", "overflow", "1e+300", "1e300"),), check=lambda c, d, r: _absent(d / "x")),
    Case("opt-run-method-unknown", "hparams enum", "cli:run",
         (*RUN, "--methods", "split,foo", "--output", "{d}/r"), "error",
         ("foo",)),
    Case("opt-run-form-unknown", "hparams enum", "cli:run",
         (*RUN, "--forms", "vectors", "--output", "{d}/r"), "error",
         ("vectors",)),
    Case("opt-run-n-train-zero", "numbers out of range", "cli:run",
         (*RUN, "--n-train", "0", "--output", "{d}/r"), "error", ("n-train",)),
    Case("opt-run-layer-beyond-model", "unknown layer", "cli:run",
         (*RUN, "--layer", "9", "--n-train", "8", "--n-test", "8",
          "--output", "{d}/r"), "error", ("9",)),
    Case("opt-run-hparams-dir-missing", "data file", "cli:run",
         (*RUN, "--hparams-dir", "{d}/nope", "--output", "{d}/r"), "error",
         ("nope",)),
    Case("opt-run-empty-dataset", "empty data", "cli:run",
         ("run", "--model", "{M}", "--dataset", "{d}/e.jsonl", "--output", "{d}/r"), "error", ("e.jsonl",),
         prep=_writes("e.jsonl", "")),
    Case("opt-compare-duplicate-names", "wrong types", "cli:compare",
         ("compare", "--model", "{M}", "--data", "{D}", "--update", "a={U}", "--update", "a={U}", "--n-pairs", "6",
          "--output", "{d}/c"), "error", ("a",)),
    Case("opt-compare-empty-name", "wrong types", "cli:compare",
         ("compare", "--model", "{M}", "--data", "{D}", "--update", "={U}", "--n-pairs", "6", "--output", "{d}/c"),
         "error", ("name",)),
    Case("opt-compare-no-name", "wrong types", "cli:compare",
         ("compare", "--model", "{M}", "--data", "{D}", "--update", "{U}", "--n-pairs", "6", "--output", "{d}/c"),
         "error", ("NAME=PATH",)),
    Case("opt-compare-reference-unknown", "wrong types", "cli:compare",
         ("compare", "--model", "{M}", "--data", "{D}", "--update", "a={U}", "--update", "b={U}", "--reference", "c",
          "--n-pairs", "6", "--output", "{d}/c"), "error", ("c",)),
    Case("opt-compare-slug-collision", "wrong types", "cli:compare",
         ("compare", "--model", "{M}", "--data", "{D}", "--update", "A b={U}", "--update", "a_b={U}", "--n-pairs", "6",
          "--multipliers", "0,1", "--output", "{d}/c"), "any", check=lambda c, d, r: _distinct_tables(d / "c")),

    # ---------------------------------------------------------------- models, tokenizers, updates of other models
    Case("model-file-not-folder", "model path", "cli:info", ("info", "--model", "{d}/m.txt"), "error", ("m.txt",),
         prep=_writes("m.txt", "hi")),
    Case("model-empty-folder", "model path", "cli:info", ("info", "--model", "{d}"), "error", ("config",)),
    Case("model-config-corrupt", "model path", "cli:info", ("info", "--model", "{d}/mm"), "error", ("config.json",),
         prep=_writes("mm/config.json", "{not json")),
    Case("model-hub-id-not-cached", "model path", "cli:info", ("info", "--model", "nobody/no-such-model-audit"), "error",
         ("no-such-model-audit",)),
    Case("model-weights-truncated", "model path", "cli:info", ("info", "--model", "{d}/mt"), "error",
         ("model.safetensors",),
         prep=lambda c, d: (shutil.copytree(c.model, d / "mt"), (d / "mt" / "model.safetensors").write_bytes(
             (c.model / "model.safetensors").read_bytes()[:5000]))),
    Case("model-tokenizer-bigger-than-embedding", "mismatched tokenizer", "cli:generate",
         ("generate", "--model", "{d}/mix", "--prompt", "Hello there, how are you?", "--max-new-tokens", "2"),
         "error", (("vocab", "tokenizer", "embedding"),), smollm2=True,
         prep=lambda c, d: _mixed_tokenizer_folder(c, d / "mix")),
    Case("update-other-hidden-size-cli", "updates of another model", "cli:sweep",
         ("sweep", "--model", "{M64}", "--data", "{D}", "--update", "{U}", "--multipliers", "0,1", "--n-pairs", "6",
          "--output", "{d}/sw"), "error", (("32", "64"),)),
    Case("update-smollm2-with-tiny-update", "updates of another model", "cli:generate",
         ("generate", "--update", "{U}", "--prompt", "hi", "--max-new-tokens", "2"), "error", (("32", "576"),),
         smollm2=True),
    Case("update-other-hidden-size-api", "updates of another model", "api:apply_updates",
         _apply_then_forward(lambda: _vec(hidden=64)), "error", ("64",)),
    Case("update-layer-beyond-model-api", "unknown layer", "api:apply_updates",
         _apply_then_forward(lambda: _vec(layer=9)), "error", ("9",)),
    Case("update-component-unknown-api", "unknown site", "api:apply_updates",
         _apply_then_forward(lambda: _vec(component="mlp_outt")), "error", ("mlp_outt",)),
    Case("update-multiplier-nan-api", "numbers out of range", "api:apply_updates",
         _apply_then_forward(lambda: _vec(), float("nan")), "error", ("multiplier",)),
    Case("update-positions-unknown-api", "wrong types", "api:apply_updates",
         _apply_then_forward(lambda: _vec(), 1.0, positions="sometimes"), "error", ("sometimes",)),
    Case("update-multiplier-batch-mismatch-api", "wrong types", "api:apply_updates",
         _apply_then_forward(lambda: _vec(), [1.0, 2.0, 3.0]), "error", ("multiplier",)),
    Case("hook-restored-after-exception", "faults", "api:apply_updates", _restored_after_error("hook"), "ok"),
    Case("merge-restored-after-exception", "faults", "api:merged_updates", _restored_after_error("merged"), "ok"),
    Case("merge-multiplier-inf", "numbers out of range", "api:merged_updates",
         lambda c, d: _merged_forward(c, float("inf")), "error", ("multiplier",)),
    Case("update-pt-nan", "NaN in a saved tensor", "cli:sweep", (*SWEEP(update="{d}/layer_1.pt"),), "error",
         (("nan", "finite"),), prep=lambda c, d: torch.save(torch.full((1, 32), float("nan")), d / "layer_1.pt")),
    Case("update-pt-wrong-shape", "updates of another model", "cli:sweep", (*SWEEP(update="{d}/layer_1.pt"),),
         "error", ("64",), prep=lambda c, d: torch.save(torch.ones(1, 64), d / "layer_1.pt")),
    Case("update-pt-layer-beyond-model", "unknown layer", "cli:sweep", (*SWEEP(update="{d}/layer_9.pt"),), "error",
         ("9",), prep=lambda c, d: torch.save(torch.ones(1, 32), d / "layer_9.pt")),
    Case("update-safetensors-truncated", "interrupted writes", "cli:sweep", (*SWEEP(update="{d}/u.safetensors"),),
         "error", ("u.safetensors",),
         prep=lambda c, d: (d / "u.safetensors").write_bytes(c.update.read_bytes()[:-40])),
    Case("update-resigned-component-unknown", "update metadata", "cli:sweep", (*SWEEP(update="{d}/u.safetensors"),),
         "error", ("banana",),
         prep=_crafted_update({"updates": lambda t: t.replace('"residual"', '"banana"')})),
    Case("update-resigned-nan-tensor", "NaN in a saved tensor", "cli:sweep", (*SWEEP(update="{d}/u.safetensors"),),
         "error", (("nan", "finite"),), prep=_crafted_update({}, lambda t: t * float("nan"))),
    Case("update-resigned-dim-mismatch", "update metadata", "cli:sweep", (*SWEEP(update="{d}/u.safetensors"),),
         "error", ("u.safetensors",), prep=_crafted_update({}, lambda t: torch.cat([t, t]))),
    Case("update-resigned-float16", "dtype string", "cli:sweep", (*SWEEP(update="{d}/u.safetensors"),), "ok",
         prep=_crafted_update({}, lambda t: t.half())),
    Case("update-symlink", "symlinked outputs", "cli:sweep", (*SWEEP(update="{d}/link.safetensors"),), "ok",
         prep=lambda c, d: os.symlink(c.update, d / "link.safetensors")),
    Case("update-folder-not-adapter", "data file", "cli:sweep", (*SWEEP(update="{d}/folder"),), "error", ("folder",),
         prep=_writes("folder/readme.md", "hi")),
    Case("update-txt", "data file", "cli:sweep", (*SWEEP(update="{d}/u.txt"),), "error", ("u.txt",),
         prep=_writes("u.txt", "hi")),
    Case("api-save-pt-suffix", "wrong types", "api:save_updates", _save("u.pt", lambda: [_vec()]), "error", ("u.pt",)),
    Case("api-save-empty", "empty data", "api:save_updates", _save("u.safetensors", []), "error",
         (("no update", "empty", "nothing"),)),
    Case("api-save-nan", "NaN in a saved tensor", "api:save_updates", _save("u.safetensors", lambda: [_vec(value=float("nan"))]),
         "error", (("nan", "finite"),), check=lambda c, d, r: _absent(d / "u.safetensors")),
    Case("api-save-hparams-not-json", "wrong types", "api:save_updates",
         _save("u.safetensors", lambda: [_vec()], hparams={"when": object()}), "error", ("hparams",),
         check=lambda c, d, r: _absent(d / "u.safetensors")),
    Case("api-save-extra-nan", "wrong types", "api:save_updates",
         _save("u.safetensors", lambda: [_vec()], extra={"score": float("nan")}), "any",
         check=lambda c, d, r: _json_metadata_is_strict(d / "u.safetensors")),
    Case("api-save-missing-parent", "read-only/missing output parents", "api:save_updates",
         _save("a/b/u.safetensors", lambda: [_vec()]), "any"),
    Case("api-save-update-not-update", "wrong types", "api:save_updates", _save("u.safetensors", ["vector"]), "error",
         ("update",)),
    Case("api-load-updates-directory", "data file", "api:load_updates",
         lambda c, d: __import__("easyedit_split").load_updates(d), "error", (("folder", "directory"),)),
    Case("api-load-updates-other-model", "updates of another model", "api:load_updates",
         lambda c, d: __import__("easyedit_split").load_updates(
             c.update, __import__("easyedit_split").load_model(str(c.model64))[0]), "error", (("32", "64"),)),
    Case("api-load-artefact-diffmean-no-pairs", "wrong types", "api:load_artefact",
         lambda c, d: __import__("easyedit_split").load_artefact("diffmean@1", c.loaded()[0]), "error",
         ("diffmean",)),
    Case("api-load-artefact-number", "wrong types", "api:load_artefact",
         lambda c, d: __import__("easyedit_split").load_artefact(123, c.loaded()[0]), "error", ("123",)),
    Case("api-load-artefact-none", "wrong types", "api:load_artefact",
         lambda c, d: __import__("easyedit_split").load_artefact(None, c.loaded()[0]), "error", ("None",)),
    Case("api-load-model-dtype", "dtype string", "api:load_model",
         lambda c, d: __import__("easyedit_split").load_model(str(c.model), dtype="float33"), "error", ("float33",)),
    Case("api-load-model-dtype-int", "dtype string", "api:load_model",
         lambda c, d: __import__("easyedit_split").load_model(str(c.model), dtype=torch.int8), "error", ("int8",)),
    Case("api-load-model-device", "device string", "api:load_model",
         lambda c, d: __import__("easyedit_split").load_model(str(c.model), device="tpu"), "error", ("tpu",)),
    Case("api-generate-negative-tokens", "numbers out of range", "api:generate",
         lambda c, d: __import__("easyedit_split").generate(*c.loaded(), "is it ?", max_new_tokens=-1, progress=False),
         "error", ("max_new_tokens",)),
    Case("api-generate-negative-temperature", "numbers out of range", "api:generate",
         lambda c, d: __import__("easyedit_split").generate(*c.loaded(), "is it ?", do_sample=True, temperature=-1,
                                                            progress=False), "error", ("temperature",)),
    Case("api-generate-mode-unknown", "wrong types", "api:generate",
         lambda c, d: __import__("easyedit_split").generate(*c.loaded(), "is it ?", [_vec()], mode="glued",
                                                            progress=False), "error", ("glued",)),
    Case("api-generate-no-prompts", "empty data", "api:generate",
         lambda c, d: __import__("easyedit_split").generate(*c.loaded(), [], progress=False, max_new_tokens=2), "any"),
    Case("api-generate-return-zero", "numbers out of range", "api:generate",
         lambda c, d: __import__("easyedit_split").generate(*c.loaded(), "is it ?", num_return_sequences=0,
                                                            progress=False, max_new_tokens=2), "error",
         ("num_return_sequences",)),
    Case("api-eval-empty-pairs", "empty data", "api:evaluate_preference_utility",
         lambda c, d: _api_eval(c, d, pairs=[]), "error", ("pairs",)),
    Case("api-eval-reference-unknown", "wrong types", "api:evaluate_preference_utility",
         lambda c, d: _api_eval(c, d, updates={"a": str(c.update), "b": str(c.update)}, reference="c"), "error",
         ("c",)),
    Case("api-eval-identical-pairs", "identical polarities", "api:evaluate_preference_utility",
         lambda c, d: _api_eval(c, d, pairs=_pairs(4) + [
             __import__("easyedit_split.data.pairs", fromlist=["x"]).PolarityPair("x", "is it ?", " yes", " yes", "audit:x")]),
         "either", (("same", "identical"),)),
    Case("api-register-unknown-name", "wrong types", "api:register_with_easyedit",
         lambda c, d: __import__("easyedit_split").register_with_easyedit(names=("nonexistent",)), "error",
         ("nonexistent",)),
    Case("api-register-string-names", "wrong types", "api:register_with_easyedit",
         lambda c, d: __import__("easyedit_split").register_with_easyedit(names="split"), "any",
         check=lambda c, d, r: _not_chars(r)),

    # ---------------------------------------------------------------- outputs: parents, symlinks, overwrite, data loss
    Case("out-sweep-readonly-parent", "read-only/missing output parents", "cli:sweep",
         (*SWEEP()[:-2], "--output", "{d}/ro/sw"), "error", ("ro",), prep=lambda c, d: _readonly(d), requires="nonroot"),
    Case("out-train-readonly-parent", "read-only/missing output parents", "cli:train", TRAIN, "error", ("ro",),
         prep=lambda c, d: (_readonly(d), (d / "h.yaml").write_text(hparams_text(c.model, c.data, d / "ro" / "o"))), requires="nonroot"),
    Case("out-generate-output-is-dir", "read-only/missing output parents", "cli:generate",
         (*GEN(), "--prompt", "is it ?", "--output", "{d}"), "error", (("folder", "directory"),)),
    Case("out-generate-missing-parent", "read-only/missing output parents", "cli:generate",
         (*GEN(), "--prompt", "is it ?", "--output", "{d}/a/b/g.jsonl"), "any"),
    Case("out-sweep-symlink-to-dir", "symlinked outputs", "cli:sweep", (*SWEEP()[:-2], "--output", "{d}/link"), "ok",
         prep=lambda c, d: ((d / "real").mkdir(), os.symlink(d / "real", d / "link")),
         check=lambda c, d, r: _exists(d / "real" / "results.json")),
    Case("out-sweep-dangling-symlink", "symlinked outputs", "cli:sweep", (*SWEEP()[:-2], "--output", "{d}/link"),
         "any", prep=lambda c, d: os.symlink(d / "gone", d / "link")),
    Case("out-generate-symlink-to-user-file", "symlinked outputs", "cli:generate",
         (*GEN(), "--prompt", "is it ?", "--output", "{d}/g.jsonl"), "error", ("g.jsonl",),
         prep=lambda c, d: ((d / "precious.txt").write_text("keep me"), os.symlink(d / "precious.txt", d / "g.jsonl")),
         check=_unchanged("precious.txt", "keep me")),
    Case("out-sweep-overwrite-keeps-user-files", "--overwrite semantics", "cli:sweep", (*SWEEP(), "--overwrite"), "ok",
         prep=_writes("sw/notes.txt", "my notes"), check=_unchanged("sw/notes.txt", "my notes")),
    Case("out-train-overwrite-keeps-other-layers", "--overwrite semantics", "cli:train", (*TRAIN, "--overwrite"), "ok",
         prep=lambda c, d: (_hp()(c, d), (d / "out" / "split_vector").mkdir(parents=True),
                            shutil.copy(c.update, d / "out" / "split_vector" / "layer_2.safetensors")),
         check=lambda c, d, r: _exists(d / "out" / "split_vector" / "layer_2.safetensors")),
    Case("out-export-overwrite-user-folder", "--overwrite semantics", "cli:export",
         ("export", "--model", "{M}", "--update", "{U}", "--multiplier", "1", "--output", "{d}/mine", "--overwrite"),
         "either", ("mine",), prep=_writes("mine/thesis.tex", "years of work"),
         check=_unchanged("mine/thesis.tex", "years of work")),
    Case("out-export-over-its-own-model", "--overwrite semantics", "cli:export",
         ("export", "--model", "{d}/mcopy", "--update", "{U}", "--multiplier", "1", "--output", "{d}/mcopy",
          "--overwrite"), "error", ("mcopy",), prep=lambda c, d: shutil.copytree(c.model, d / "mcopy"),
         check=lambda c, d, r: _exists(d / "mcopy" / "config.json")),
    Case("out-export-into-update-folder-parent", "--overwrite semantics", "cli:export",
         ("export", "--model", "{M}", "--update", "{d}/v/u.safetensors", "--multiplier", "1", "--output", "{d}/v",
          "--overwrite"), "error", ("v",), prep=lambda c, d: ((d / "v").mkdir(), shutil.copy(c.update, d / "v" / "u.safetensors")),
         check=lambda c, d, r: _exists(d / "v" / "u.safetensors")),
    Case("out-sweep-output-is-data-folder", "--overwrite semantics", "cli:sweep",
         (*SWEEP(data="{d}/sw/d.jsonl"), "--overwrite"), "any", prep=lambda c, d: (
             (d / "sw").mkdir(), shutil.copy(c.data, d / "sw" / "d.jsonl")),
         check=lambda c, d, r: _exists(d / "sw" / "d.jsonl")),
    Case("out-generate-overwrite-prompts-file", "--overwrite semantics", "cli:generate",
         (*GEN(), "--prompts-file", "{d}/p.jsonl", "--output", "{d}/p.jsonl", "--overwrite"), "error", ("p.jsonl",),
         prep=_writes("p.jsonl", json.dumps({"prompt": "is it ?"}) + "\n"),
         check=_unchanged("p.jsonl", json.dumps({"prompt": "is it ?"}) + "\n")),
    Case("out-train-output-is-file", "read-only/missing output parents", "cli:train", TRAIN, "error", ("out",),
         prep=lambda c, d: (_hp()(c, d), (d / "out").write_text("x"))),
    Case("out-unicode-newline-name", "unicode in paths", "cli:sweep", (*SWEEP()[:-2], "--output", "{d}/a\nb ✓"), "ok"),

    # ---------------------------------------------------------------- resume
    Case("resume-after-data-change", "resume after changing data/hparams", "cli:train",
         (*TRAIN, "--resume", "--overwrite"), "either", (("data", "pairs"),),
         prep=lambda c, d: _checkpointed_then(c, d, data=rows(20))),
    Case("resume-after-hparams-change", "resume after changing data/hparams", "cli:train",
         (*TRAIN, "--resume", "--overwrite"), "either", ("lr",),
         prep=lambda c, d: _checkpointed_then(c, d, lr=0.2)),
    Case("resume-without-checkpoint", "resume after changing data/hparams", "cli:train", (*TRAIN, "--resume"), "any",
         prep=_hp()),

    # ---------------------------------------------------------------- easyedit subcommands
    Case("ee-enable-missing-site-dir", "read-only/missing output parents", "cli:easyedit enable",
         ("easyedit", "enable", "--site-dir", "{d}/nope"), "either", ("nope", "not a folder this Python")),
    Case("ee-enable-readonly-site-dir", "read-only/missing output parents", "cli:easyedit enable",
         ("easyedit", "enable", "--site-dir", "{d}/ro"), "error", ("ro",), prep=lambda c, d: _readonly(d), requires="nonroot"),
    Case("ee-status-site-dir-file", "read-only/missing output parents", "cli:easyedit status",
         ("easyedit", "status", "--site-dir", "{d}/f"), "error", ("f",), prep=_writes("f", "x")),
    Case("ee-disable-when-not-enabled", "--overwrite semantics", "cli:easyedit disable",
         ("easyedit", "disable", "--site-dir", "{d}"), "ok"),
    Case("ee-disable-keeps-foreign-pth", "--overwrite semantics", "cli:easyedit disable",
         ("easyedit", "disable", "--site-dir", "{d}"), "ok", prep=_writes("other.pth", "import os\n"),
         check=_unchanged("other.pth", "import os\n")),
    Case("ee-prepare-missing-checkout", "read-only/missing output parents", "cli:easyedit prepare",
         ("easyedit", "prepare", "--checkout", "{d}/nope", "--into", "{d}/run"), "error", ("nope",)),
    Case("ee-prepare-into-nonempty", "--overwrite semantics", "cli:easyedit prepare",
         ("easyedit", "prepare", "--checkout", "{d}", "--into", "{d}/run"), "error", (("run", "checkout"),),
         prep=_writes("run/keep.txt", "keep"), check=_unchanged("run/keep.txt", "keep")),
    Case("ee-prepare-train-pairs-zero", "numbers out of range", "cli:easyedit prepare",
         ("easyedit", "prepare", "--checkout", "{d}", "--into", "{d}/run", "--train-pairs", "0"), "error",
         (("train-pairs", "checkout"),)),
    Case("ee-report-missing-vectors", "data file", "cli:easyedit report",
         ("easyedit", "report", "{d}/nope", "--output", "{d}/r"), "error", ("nope",)),
    Case("ee-report-empty-vectors", "empty data", "cli:easyedit report",
         ("easyedit", "report", "{d}/vectors/m", "--model", "{M}", "--data", "{D}", "--output", "{d}/r"), "error",
         ("vectors",), prep=lambda c, d: (d / "vectors" / "m").mkdir(parents=True)),
    Case("ee-scaffold-layer-beyond-model", "unknown layer", "cli:easyedit scaffold",
         ("easyedit", "scaffold", "--checkout", EASYEDIT, "--model", "{M}", "--layer", "99"), "error", ("99",), requires="easyedit"),
    Case("ee-scaffold-method-unknown", "hparams enum", "cli:easyedit scaffold",
         ("easyedit", "scaffold", "--checkout", EASYEDIT, "--model", "{M}", "--method", "magic"), "error", ("magic",), requires="easyedit"),
    Case("ee-edit-missing-data", "data file", "cli:easyedit edit",
         ("easyedit", "edit", "--editing_method", "SPLIT", "--data_type", "zsre", "--data_dir", "{d}/nope.json",
          "--model", "{M}", "--output", "{d}/o"), "error", ("nope.json",)),

    # ---------------------------------------------------------------- faults: kill -9, concurrency, disk full
    Case("fault-kill-train-then-rerun", "interrupted writes", "cli:train",
         _killed_then_rerun(lambda c, d: (_hp(n_epochs=30)(c, d), list(_fmt(TRAIN, c, d)))[1], 6.0,
                            lambda d: list((d / "out").rglob("*.safetensors")) if (d / "out").exists() else []),
         "ok"),
    Case("fault-kill-sweep-then-rerun", "interrupted writes", "cli:sweep",
         _killed_then_rerun(lambda c, d: [*_fmt(SWEEP(), c, d)[:-2], "--output", str(d / "sw"), "--n-pairs", "16",
                                          "--multipliers=-2:2:9"], 6.0, lambda d: []), "ok"),
    Case("fault-concurrent-generate-one-output", "concurrent runs on one folder", "cli:generate",
         _concurrent(lambda c, d: _fmt((*GEN(), "--prompt", "is it ?", "--prompt", "yes no", "--output", "{d}/g.jsonl"),
                                       c, d), lambda c, d: _valid_jsonl(d / "g.jsonl", 2)), "ok"),
    Case("fault-concurrent-export-one-folder", "concurrent runs on one folder", "cli:export",
         _concurrent(lambda c, d: _fmt(("export", "--model", "{M}", "--update", "{U}", "--multiplier", "1",
                                        "--output", "{d}/x"), c, d), lambda c, d: _exists(d / "x" / "config.json")),
         "ok"),
    Case("fault-disk-full-generate", "interrupted writes", "cli:generate",
         _ulimit(lambda c, d: _fmt((*GEN(), *[a for w in WORDS for a in ("--prompt", f"is it {w} ?")], "--output",
                                    "{d}/g.jsonl"), c, d), 1, lambda d: [d / "g.jsonl"]), "error", ("g.jsonl",)),
    Case("fault-disk-full-sweep", "interrupted writes", "cli:sweep",
         _ulimit(lambda c, d: _fmt(SWEEP(), c, d), 4, lambda d: [d / "sw" / "results.json"]), "error", ("sw",)),
]


# ------------------------------------------------------------------------------------------------ check helpers


def _fmt(argv: tuple[str, ...], ctx: Ctx, d: Path) -> list[str]:
    subs = {"{M}": str(ctx.model), "{M64}": str(ctx.model64), "{D}": str(ctx.data), "{U}": str(ctx.update),
            "{PT}": str(ctx.pt), "{F}": str(ctx.root / "fresh.jsonl"), "{d}": str(d), "{H}": str(d / "h.yaml")}
    out = []
    for a in argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        out.append(a)
    return out


def _report_is_clean(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    bad = [c for c in ("\x1b", "\u202e", "\x00") if c in text]
    if bad:
        raise WrongResult(f"{path.name} holds raw control characters {bad!r}")


def _absent(path: Path) -> None:
    if path.exists():
        raise WrongResult(f"{path.name} was written although the call failed")


def _exists(path: Path) -> None:
    if not path.exists():
        raise DataLoss(f"{path} is gone")


def _valid_jsonl(path: Path, n: int) -> None:
    lines = path.read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    if len(recs) != n:
        raise WrongResult(f"{path.name} holds {len(recs)} records, expected {n}")


def _json_metadata_is_strict(path: Path) -> None:
    if not path.exists():
        return
    from easyedit_split.core.serialization import read_metadata

    for k, v in read_metadata(path).items():
        if "NaN" in v or "Infinity" in v:
            raise WrongResult(f"metadata {k} holds non-standard JSON: {v[:80]}")


def _distinct_tables(folder: Path) -> None:
    if folder.is_dir() and len(list(folder.glob("sweep_*.csv"))) != 2:
        raise WrongResult(f"two updates, {len(list(folder.glob('sweep_*.csv')))} sweep tables")


def _not_chars(result: Any) -> None:
    if isinstance(result, list) and any(len(x) == 1 for x in result):
        raise WrongResult(f"names='split' was read letter by letter: {result}")


def _merged_forward(ctx: Ctx, m: float):
    from easyedit_split.core.apply import merged_updates

    model, tok = ctx.loaded()
    with merged_updates(model, _vec(), m):
        out = _logits(model, tok)
    if not torch.isfinite(out).all():
        raise WrongResult("merged at an infinite multiplier: non-finite logits, no error")
    return out


def _mixed_tokenizer_folder(ctx: Ctx, folder: Path) -> None:
    from transformers import AutoTokenizer

    from easyedit_split.core.models import builtin_model_path

    shutil.copytree(ctx.model, folder)
    for f in folder.iterdir():
        if "token" in f.name or f.name == "special_tokens_map.json":
            f.unlink()
    AutoTokenizer.from_pretrained(builtin_model_path("smollm2")).save_pretrained(folder)


def _checkpointed_then(ctx: Ctx, d: Path, data: list[dict] | None = None, **changes: Any) -> None:
    """Train with checkpoints, then change the data or hparams before the --resume run."""
    from easyedit_split.cli import main

    first = write_jsonl(d / "data.jsonl", rows(24))
    (d / "h.yaml").write_text(hparams_text(ctx.model, first, d / "out", n_epochs=2, checkpoint_every=1))
    with _quiet():
        assert main(["train", "--hparams", str(d / "h.yaml"), "--no-progress"]) == 0
    if data is not None:
        write_jsonl(first, data)
    (d / "h.yaml").write_text(hparams_text(ctx.model, first, d / "out", n_epochs=2, checkpoint_every=1, **changes))


# ------------------------------------------------------------------------------------------------ running


@dataclass
class Outcome:
    rc: int | None
    out: str
    err: str
    exc: BaseException | None = None
    tb: str = ""
    value: Any = None


class _CurrentStderrHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"{record.levelname} {record.name}: {self.format(record)}\n")


class _Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _Timeout


def execute(case: Case, ctx: Ctx, d: Path) -> Outcome:
    from easyedit_split.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_TIMEOUT_S)
    sys.stdout, sys.stderr = out, err
    try:
        if callable(case.run):
            value = case.run(ctx, d)
            return Outcome(0, out.getvalue(), err.getvalue(), value=value)
        rc = main(_fmt(case.run, ctx, d))
        return Outcome(rc, out.getvalue(), err.getvalue())
    except SystemExit as exc:
        return Outcome(exc.code if isinstance(exc.code, int) else 2, out.getvalue(), err.getvalue())
    except (Exception, _Timeout) as exc:  # noqa: BLE001 - classified below
        return Outcome(None, out.getvalue(), err.getvalue(), exc, traceback.format_exc())
    finally:
        signal.alarm(0)
        sys.stdout, sys.stderr = saved


def _mentions(text: str, words: tuple[Any, ...]) -> list[str]:
    low = text.lower()
    missing = []
    for w in words:
        alts = w if isinstance(w, tuple) else (w,)
        if not any(str(a).lower() in low for a in alts):
            missing.append("/".join(map(str, alts)))
    return missing


def classify(case: Case, o: Outcome, ctx: Ctx, d: Path) -> tuple[str, str]:
    if o.exc is not None and not isinstance(o.exc, (EasyEditSplitError, WrongResult, DataLoss)):
        if isinstance(o.exc, _Timeout):
            return "traceback", f"hung for {CASE_TIMEOUT_S} s"
        last = o.tb.strip().splitlines()[-1]
        return "traceback", last[:200]
    if isinstance(o.exc, WrongResult):
        return "silent wrong result", str(o.exc)[:200]
    if isinstance(o.exc, DataLoss):
        return "data loss", str(o.exc)[:200]
    if "Traceback (most recent call last)" in o.err:
        return "traceback", o.err.strip().splitlines()[-1][:200]
    if case.check is not None:
        try:
            case.check(ctx, d, o)
        except DataLoss as exc:
            return "data loss", str(exc)[:200]
        except (WrongResult, AssertionError) as exc:
            return "silent wrong result", str(exc)[:200]
        except Exception as exc:  # noqa: BLE001
            return "silent wrong result", f"check failed: {exc!r}"[:200]
    failed = o.exc is not None or (o.rc not in (0, None))
    message = str(o.exc) if o.exc is not None else o.err
    if failed:
        first = next((ln for ln in message.splitlines() if ln.startswith(("error:", "usage:")) is False or
                      ln.startswith("error:")), message)
        shown = " ".join(x for x in message.splitlines() if x.startswith(("error:",)) or not o.err) or message
        shown = shown.strip()[:240] or first[:240]
        if case.expect in ("ok", "warn"):
            return "unclear error", f"refused valid input: {shown}"
        if ".tmp" in message and ".tmp" not in "".join(_fmt(case.run, ctx, d) if not callable(case.run) else ""):
            return "unclear error", f"names a temporary path: {shown}"
        if len(message) > 4000:
            return "unclear error", f"message of {len(message)} characters"
        missing = _mentions(message, case.mention)
        if missing:
            return "unclear error", f"does not name {missing}: {shown}"
        return "clear error", shown
    warned = "WARNING" in o.err
    if case.expect == "error":
        return "silent wrong result", "accepted" + (f" (warning: {_first_warning(o.err)})" if warned else "")
    if case.expect == "either":
        if warned and not _mentions(o.err, case.mention):
            return "sensible warning", _first_warning(o.err)
        return "silent wrong result", "accepted without a word" + (
            f" (unrelated warning: {_first_warning(o.err)})" if warned else "")
    if case.expect == "warn":
        if warned and not _mentions(o.err, case.mention):
            return "sensible warning", _first_warning(o.err)
        return "silent wrong result", "no warning naming " + "/".join(map(str, case.mention))
    if warned:
        return "sensible warning", _first_warning(o.err)
    return "correct", (repr(o.value)[:120] if o.value is not None else "exit 0")


def _first_warning(err: str) -> str:
    return next((ln for ln in err.splitlines() if "WARNING" in ln), "")[:200]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the cases whose id contains one of these (comma list)")
    parser.add_argument("--no-smollm2", action="store_true", help="skip the cases that load SmolLM2-135M")
    parser.add_argument("--json", help="also write the outcomes as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.umask(0o022)
    root = Path(tempfile.mkdtemp(prefix="audit-"))
    logging.getLogger().addHandler(_CurrentStderrHandler(logging.WARNING))
    logging.getLogger().setLevel(logging.WARNING)
    try:
        ctx = build_ctx(root, smollm2=not args.no_smollm2)
        rows_out = []
        counts: Counter[str] = Counter()
        for case in CASES:
            if args.only and not any(part in case.id for part in args.only.split(",")):
                continue
            if case.smollm2 and not ctx.smollm2:
                continue
            if (case.requires == "nonroot" and os.geteuid() == 0) or (
                    case.requires == "easyedit" and not Path(EASYEDIT, "steer").is_dir()):
                print(f"   {case.id:45s} skipped (needs {case.requires})")
                continue
            d = root / "cases" / case.id
            d.mkdir(parents=True)
            t0 = time.perf_counter()
            try:
                if case.prep is not None:
                    case.prep(ctx, d)
                o = execute(case, ctx, d)
                outcome, detail = classify(case, o, ctx, d)
            except Exception as exc:  # noqa: BLE001 - a broken case is reported, not fatal
                outcome, detail = "traceback", f"(audit setup) {exc!r}"[:200]
            dt = time.perf_counter() - t0
            counts[outcome] += 1
            rows_out.append({"id": case.id, "class": case.klass, "surface": case.surface, "outcome": outcome,
                             "detail": detail, "seconds": round(dt, 2)})
            flag = "!!" if outcome in BAD else "  "
            print(f"{flag} {case.id:45s} {case.surface:30s} {outcome:20s} {detail.replace(chr(10), ' ')[:150]}",
                  flush=True)
        print()
        print(f"{sum(counts.values())} cases: " + ", ".join(f"{counts[k]} {k}" for k in OUTCOMES))
        if args.json:
            Path(args.json).write_text(json.dumps({"counts": {k: counts[k] for k in OUTCOMES}, "cases": rows_out},
                                                  indent=1))
        return 1 if any(counts[k] for k in BAD) else 0
    finally:
        for p in root.rglob("*"):
            with contextlib.suppress(OSError):
                if p.is_dir() and not p.is_symlink():
                    p.chmod(p.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"scratch: {root}")


if __name__ == "__main__":
    sys.exit(main())
