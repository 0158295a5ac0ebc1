"""The example scripts parse their arguments and import everything they use (they run on the real model)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_there_are_four_examples():
    assert {p.name for p in EXAMPLES} >= {"run_split.py", "compare_methods.py", "evaluate_easyedit_intervention.py",
                                          "register_in_easyedit.py"}


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_help(script):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # this checkout
    proc = subprocess.run([sys.executable, str(script), "--help"], check=False, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


# --- each example runs as its docstring says, on its shipped defaults, on a tiny model ----------------------------

def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A 4-layer random Llama with the tiny tokenizer, saved as a Hugging Face folder (its name says llama-free
    'tiny', as the built-in 'smollm2' does not say llama either)."""
    from tests.conftest import build_tiny_tokenizer
    from tests.tiny_models import tiny_model

    folder = tmp_path_factory.mktemp("models") / "tiny"
    model, tok = tiny_model("llama"), build_tiny_tokenizer()
    for k in ("pad", "eos", "bos"):
        setattr(model.config, f"{k}_token_id", getattr(tok, f"{k}_token_id"))
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = tok.pad_token_id, tok.eos_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _run(script, *args, cwd=ROOT):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), *map(str, args)], check=False,
                          capture_output=True, text=True, timeout=600, env=_env(), cwd=cwd)
    return proc


def test_run_split_writes_under_its_output_only_and_refuses_to_overwrite(tiny_folder, tmp_path):
    before = sorted(p.name for p in ROOT.iterdir())
    out = tmp_path / "run"
    proc = _run("run_split.py", "--model", tiny_folder, "--layer", 1, "--max-pairs", 8, "--output", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "split_vector" / "layer_1.safetensors").exists() and "SPLIT:" in proc.stdout
    assert sorted(p.name for p in ROOT.iterdir()) == before  # nothing written into the repository
    again = _run("run_split.py", "--model", tiny_folder, "--layer", 1, "--max-pairs", 8, "--output", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr


def test_register_in_easyedit_without_easyedit_uses_the_plugin_registry(tiny_folder, tmp_path):
    proc = _run("register_in_easyedit.py", "--model", tiny_folder, "--layer", 1, "--max-pairs", 8,
                "--output", tmp_path / "reg")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "alg_name='split'" in proc.stdout and list((tmp_path / "reg" / "vectors").rglob("layer_1.safetensors"))


def test_register_in_easyedit_with_a_checkout_as_documented(tiny_folder, tmp_path):
    from tests.easyedit_checkout import find_checkout

    checkout = find_checkout("steer/utils/alg_dict.py")
    if checkout is None:
        pytest.skip("no EasyEdit checkout with steer/utils/alg_dict.py (set EASYEDIT_PATH)")
    args = ("--easyedit", checkout, "--model", tiny_folder, "--layer", 1, "--max-pairs", 8, "--output", tmp_path / "reg")
    proc = _run("register_in_easyedit.py", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "registered into steer.utils.alg_dict" in proc.stdout
    assert list((tmp_path / "reg" / "vectors").rglob("layer_1.pt"))
    again = _run("register_in_easyedit.py", *args)
    assert again.returncode == 2 and "--overwrite" in again.stderr  # an earlier run is not silently replaced


def test_compare_methods_renders_every_row_alike_and_fits_on_its_default_grid(tiny_folder, tmp_path):
    out = tmp_path / "cmp"
    proc = _run("compare_methods.py", "--model", tiny_folder, "--layer", 1, "--n-train", 8, "--n-eval", 6,
                "--peft-steps", 2, "--output", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if " m=0 " in line]
    assert {r[0] for r in rows} == {"split", "sft", "reps", "diffmean", "peft_lora"}
    # one rendering: at m = 0 every row is the same unsteered model on the same prompts
    assert len({tuple(r[2:]) for r in rows}) == 1, rows
    report = (out / "report" / "report.md").read_text()
    assert "| skipped" not in report  # the default grid has enough points for every fit of every method


def test_evaluate_easyedit_intervention_demo_fits_on_its_default_grid(tiny_folder, tmp_path):
    out = tmp_path / "pt"
    proc = _run("evaluate_easyedit_intervention.py", "--demo", "--model", tiny_folder, "--layer", 1, "--n-eval", 6,
                "--output", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "layer_1.pt").exists() and (out / "report" / "report.md").exists()
    fits = next(line for line in proc.stdout.splitlines() if line.startswith("fits: "))
    assert "skipped" not in fits and "R²=" in fits
