"""Integration with a real EasyEdit checkout: EasyEdit's own code drives the plugin.

The checkout is found by :mod:`tests.easyedit_checkout`; the module is skipped (one line saying why)
where there is none or EasyEdit's steering dependencies (the ``easyedit`` extra) are missing. Models
are tiny random Llamas saved under a folder whose name contains "llama" (EasyEdit's ``get_model``
picks its wrapper class from the path string).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.easyedit_checkout import REPO, require_steering, save_tiny_llama, steer_on_path
from tests.tiny_models import tiny_model

EASYEDIT = require_steering()

from omegaconf import OmegaConf

FORMS = ("vector", "lora", "local_weight")
PAIRS = [{"question": f"is the {w} great ?", "matching": "yes", "not_matching": "no"}
         for w in ("film", "food", "pizza", "place")]
IDS = torch.tensor([[2, 9, 10, 11, 12, 13]])


@pytest.fixture(scope="module")
def host():
    """EasyEdit's steering package imported from the checkout, with the plugin registered; removed
    from ``sys.modules`` afterwards so other test modules see no EasyEdit."""
    previous = os.environ.get("EASYEDIT_SPLIT_AUTOREGISTER")
    os.environ["EASYEDIT_SPLIT_AUTOREGISTER"] = "0"  # an enabled .pth must not register before the snapshot
    with steer_on_path(EASYEDIT):
        import steer.vector_generators.vector_generators as generators
        from steer.utils import alg_dict

        saved = (dict(alg_dict.HYPERPARAMS_CLASS_DICT), dict(alg_dict.METHOD_FNS),
                 list(generators.REQUIRED_DATASET_METHODS))
        yield alg_dict
        alg_dict.HYPERPARAMS_CLASS_DICT.clear()
        alg_dict.HYPERPARAMS_CLASS_DICT.update(saved[0])
        alg_dict.METHOD_FNS.clear()
        alg_dict.METHOD_FNS.update(saved[1])
        generators.REQUIRED_DATASET_METHODS[:] = saved[2]
    if previous is None:
        os.environ.pop("EASYEDIT_SPLIT_AUTOREGISTER", None)
    else:
        os.environ["EASYEDIT_SPLIT_AUTOREGISTER"] = previous


@pytest.fixture(autouse=True)
def _fresh_shared_model():
    """Each test starts without a model wrapper shared from an earlier one (see easyedit.host.shared_wrapper)."""
    from easyedit_split.easyedit.host import release_shared_wrapper

    release_shared_wrapper()
    yield
    release_shared_wrapper()


@pytest.fixture(scope="module")
def registered(host):
    from easyedit_split import register_with_easyedit

    assert "steer.utils.alg_dict" in register_with_easyedit()
    return host


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


def _yaml(path: Path, data: dict) -> str:
    path.write_text(json.dumps(data))  # JSON is YAML
    return str(path)


def _top_cfg(tmp_path: Path, llama_dir: Path, **extra):
    cfg = {"model_name_or_path": str(llama_dir), "dtype": "float32", "device": "cpu", "seed": 0,
           "use_chat_template": True, "system_prompt": "", "save_vectors": True,
           "steer_vector_output_dirs": [str(tmp_path / "vectors")], "steer_train_dataset": ["my_pairs"],
           "generation_output_dir": str(tmp_path / "generation"), "generation_data_size": None,
           "generate_orig_output": False, "num_responses": 1, "steer_from_end_position": False,
           "save_activations": True, "vllm_enable": False, "generation_params": {"max_new_tokens": 3, "do_sample": False}}
    cfg.update(extra)
    return OmegaConf.create(cfg)


def _train_hparams(tmp_path: Path, form: str, alg_name: str = "split", **extra) -> str:
    hp = {"alg_name": alg_name, "layers": [1], "intervention_method": form, "n_epochs": 1, "lr": 0.05,
          "batch_size": 2, "gradient_accumulation_steps": 1, "low_rank_dimension": 2}
    hp.update(extra)
    return _yaml(tmp_path / f"generate_{alg_name}_{form}.yaml", hp)


def _apply_hparams(tmp_path: Path, form: str, alg_name: str = "split", **extra) -> str:
    hp = {"alg_name": alg_name, "layers": [1], "multipliers": [3.0], "intervention_method": form}
    hp.update(extra)
    return _yaml(tmp_path / f"apply_{alg_name}_{form}.yaml", hp)


def _logits(wrapper) -> torch.Tensor:
    with torch.no_grad():
        return wrapper.model(input_ids=IDS).logits


# ------------------------------------------------------------------------------------------ registration


def test_registration_states_what_it_took_over_and_kept(host, caplog):
    from steer.vector_generators.spilt.generate_spilt_hparams import SpiltHyperParams
    from steer.vector_generators.vector_generators import REQUIRED_DATASET_METHODS

    from easyedit_split import register_with_easyedit
    from easyedit_split.easyedit.easyedit_hparams import EasyEditSplitHyperParams

    with caplog.at_level(logging.WARNING, logger="easyedit_split.easyedit.registry"):
        assert "steer.utils.alg_dict" in register_with_easyedit(keep_upstream=True)
    assert "kept upstream's spilt, sft, reps, caa" in caplog.text
    assert "added split, dpo, diffmean" in caplog.text and "took over" not in caplog.text
    assert host.HYPERPARAMS_CLASS_DICT["spilt"]["train"] is SpiltHyperParams
    assert host.HYPERPARAMS_CLASS_DICT["split"]["train"] is EasyEditSplitHyperParams
    assert "split" in REQUIRED_DATASET_METHODS and "diffmean" in REQUIRED_DATASET_METHODS

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="easyedit_split.easyedit.registry"):
        register_with_easyedit()
    assert "took over upstream's spilt, sft, reps" in caplog.text and "kept upstream's caa" in caplog.text
    assert host.HYPERPARAMS_CLASS_DICT["spilt"]["train"] is EasyEditSplitHyperParams
    assert host.METHOD_FNS["spilt"]["train"] == "easyedit_split.easyedit.entry_points:generate_split"
    assert host.get_method_fn("split", "apply").__name__ == "apply_split"
    assert host.METHOD_FNS["caa"]["train"].startswith("steer.")


def test_registration_reports_easyedit_own_import_error(tmp_path):
    """A checkout whose registry fails inside EasyEdit itself (as at upstream HEAD 14cea82)."""
    (tmp_path / "steer" / "utils").mkdir(parents=True)
    (tmp_path / "steer" / "vector_generators").mkdir()
    for init in ("steer", "steer/utils", "steer/vector_generators"):
        (tmp_path / init / "__init__.py").write_text("")
    (tmp_path / "steer" / "utils" / "alg_dict.py").write_text(
        "from ..vector_generators import SaeFeatureHyperParams\n")
    code = textwrap.dedent(f"""
        import logging, sys
        sys.path[:0] = [{str(tmp_path)!r}, {str(REPO)!r}]
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        from easyedit_split import register_with_easyedit
        print("RESULT", register_with_easyedit())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    log = out.stdout + out.stderr
    assert "RESULT []" in log
    assert "WARNING EasyEdit's steer.utils.alg_dict failed to import (ImportError: cannot import name " \
           "'SaeFeatureHyperParams'" in log
    assert "not found" not in log


def test_easyedit_builds_plugin_hparams_with_its_keys_and_validation(registered, tmp_path, llama_dir):
    from steer.utils import load_apply_vector_hparams, load_generate_vector_hparams

    from easyedit_split.base.hparams_io import HParamsError

    cfg = _top_cfg(tmp_path, llama_dir, dtype="bfloat16", steer_train_hparam_paths=[_train_hparams(tmp_path, "vector")],
                   apply_steer_hparam_paths=[_apply_hparams(tmp_path, "vector")], steer_vector_load_dir=["somewhere"])
    hp = load_generate_vector_hparams(cfg)["split"]
    assert hp.torch_dtype == "bfloat16" and hp.seed == 0 and hp.n_epochs == 1
    ap = load_apply_vector_hparams(cfg)["split"]
    assert ap.seed == 0 and ap.steer_vector_load_dir == "somewhere" and ap.multipliers == [3.0]
    bad = _top_cfg(tmp_path, llama_dir, steer_train_hparam_paths=[_train_hparams(tmp_path, "vector", n_epochs=0)])
    with pytest.raises(HParamsError, match="key 'n_epochs' must be >= 1"):
        load_generate_vector_hparams(bad)


# ------------------------------------------------------------------------------------------ EasyEdit's flow


@pytest.mark.parametrize("form", FORMS)
def test_split_end_to_end_in_easyedit_flow(registered, tmp_path, llama_dir, form):
    """BaseVectorGenerator → BaseVectorApplier → generate → reset_all, as EasyEdit's steering.py runs it,
    on a dataset name the plugin does not ship."""
    from steer.vector_appliers.vector_applier import BaseVectorApplier
    from steer.vector_generators.vector_generators import BaseVectorGenerator

    from easyedit_split.core.apply import steer
    from easyedit_split.core.serialization import load_updates

    cfg = _top_cfg(tmp_path, llama_dir, steer_train_hparam_paths=[_train_hparams(tmp_path, form)],
                   apply_steer_hparam_paths=[_apply_hparams(tmp_path, form)])
    vectors = BaseVectorGenerator(cfg).generate_vectors({"my_pairs": PAIRS})
    folder = tmp_path / "vectors" / "my_pairs" / f"split_{form}"
    assert (folder / "layer_1.pt").exists() and (folder / "layer_1.safetensors").exists()
    meta = json.loads((folder / "layer_1.safetensors.json").read_text()) if (folder / "layer_1.safetensors.json").exists() else None
    if meta is not None:
        assert meta.get("n_train_pairs", len(PAIRS)) == len(PAIRS)

    applier = BaseVectorApplier(cfg)
    applier._load_model()  # EasyEdit loads its wrapper; the plugin must steer that model, not a copy
    wrapper = applier.model
    base = _logits(wrapper)
    applier.apply_vectors(vectors["my_pairs"])
    assert applier.model is wrapper
    from_memory = _logits(wrapper)
    assert not torch.allclose(from_memory, base)

    # the same update through the plugin's own hooks on a plain copy of the model gives the same logits
    plain = tiny_model("llama")
    update = load_updates(folder / "layer_1.safetensors", plain).updates[0]
    with steer(plain, [update], 3.0), torch.no_grad():
        assert torch.allclose(plain(input_ids=IDS).logits, from_memory, atol=1e-5)

    results = applier.generate({"gen": [{"input": "is the sky blue ?"}]}, save_results=False,
                               max_new_tokens=3, do_sample=False)
    assert len(results) == 1 and isinstance(results[0]["pred"][0], str)

    wrapper.reset_all()
    assert torch.equal(_logits(wrapper), base)

    # apply from EasyEdit's steer_vector_load_dir (the path EasyEdit's apply configs name)
    cfg_dir = _top_cfg(tmp_path, llama_dir, apply_steer_hparam_paths=[_apply_hparams(tmp_path, form)],
                       steer_vector_load_dir=[str(folder)])
    applier_dir = BaseVectorApplier(cfg_dir)
    applier_dir.model = wrapper
    applier_dir.apply_vectors()
    assert torch.allclose(_logits(wrapper), from_memory, atol=1e-6)
    wrapper.reset("split")
    assert torch.equal(_logits(wrapper), base)


def test_generator_then_applier_share_one_model(registered, tmp_path, llama_dir, tiny_tokenizer, monkeypatch):
    """steering.py's flow (BaseVectorGenerator, then BaseVectorApplier with no model): EasyEdit passes no model to
    generate_*, so the plugin loads EasyEdit's wrapper once, trains on it, and the applier steers that same
    wrapper; the update trained there equals the one trained on a plain copy of the model."""
    from steer.vector_appliers.vector_applier import BaseVectorApplier
    from steer.vector_generators.vector_generators import BaseVectorGenerator

    import easyedit_split.easyedit.host as host_mod
    from easyedit_split.easyedit.entry_points import generate_split

    loads = []
    original = host_mod.load_wrapper
    monkeypatch.setattr(host_mod, "load_wrapper", lambda hp: loads.append(hp) or original(hp))
    cfg = _top_cfg(tmp_path, llama_dir, steer_train_hparam_paths=[_train_hparams(tmp_path, "vector")],
                   apply_steer_hparam_paths=[_apply_hparams(tmp_path, "vector")], save_vectors=False)
    generator = BaseVectorGenerator(cfg)
    vectors = generator.generate_vectors({"my_pairs": PAIRS})
    applier = BaseVectorApplier(cfg)
    base_wrapper = host_mod.shared_wrapper(applier.hparams_dict["split"])
    before = _logits(base_wrapper)
    applier.apply_vectors(vectors["my_pairs"])
    assert len(loads) == 1 and applier.model is base_wrapper
    assert not torch.allclose(_logits(applier.model), before)
    applier.model.reset_all()
    assert torch.equal(_logits(applier.model), before)

    plain = generate_split(generator.hparams_dict["split"], PAIRS, model=(tiny_model("llama"), tiny_tokenizer))
    assert torch.allclose(plain["layer_1"], vectors["my_pairs"]["split"]["layer_1"], atol=1e-5)


def test_apply_with_no_model_loads_easyedit_wrapper(registered, tmp_path, llama_dir):
    """EasyEdit's applier with no model yet: the plugin loads EasyEdit's own wrapper (dtype honoured)."""
    from steer.models.model_wrapper import BaseModelWrapper
    from steer.vector_appliers.vector_applier import BaseVectorApplier

    from easyedit_split.easyedit.entry_points import generate_split

    cfg = _top_cfg(tmp_path, llama_dir, dtype="bfloat16", apply_steer_hparam_paths=[_apply_hparams(tmp_path, "vector")])
    vectors = {"split": {"layer_1": torch.randn(32)}}
    applier = BaseVectorApplier(cfg)
    applier.apply_vectors(vectors)
    assert isinstance(applier.model, BaseModelWrapper) and applier.model.VLLM_model is None
    assert next(applier.model.model.parameters()).dtype == torch.bfloat16
    results = applier.generate({"gen": [{"input": "is the sky blue ?"}]}, save_results=False,
                               max_new_tokens=2, do_sample=False)
    assert len(results) == 1

    from easyedit_split.easyedit.easyedit_hparams import EasyEditSplitHyperParams

    with pytest.raises(ValueError, match="REQUIRED_DATASET_METHODS"):
        generate_split(EasyEditSplitHyperParams(layers=[1], model_name_or_path=str(llama_dir)))


def test_merged_mode_inside_easyedit_wrapper(registered, tmp_path, llama_dir):
    from easyedit_split.easyedit.easyedit_hparams import EasyEditApplySplitHyperParams
    from easyedit_split.easyedit.entry_points import apply_split
    from easyedit_split.easyedit.host import load_wrapper

    hp = EasyEditApplySplitHyperParams(layers=[1], multipliers=[2.0], model_name_or_path=str(llama_dir))
    wrapper = load_wrapper(hp)
    base = _logits(wrapper)
    vec = {"layer_1": torch.randn(32)}
    apply_split(hp, wrapper, vec)
    hooked = _logits(wrapper)
    wrapper.reset_all()
    hp.mode = "merged"
    apply_split(hp, wrapper, vec)
    assert torch.allclose(_logits(wrapper), hooked, atol=1e-5)
    wrapper.reset_all()
    assert torch.equal(_logits(wrapper), base)


# ------------------------------------------------------------------------------------------ upstream spelling


@pytest.mark.parametrize("form", FORMS)
def test_upstream_spilt_yaml_trains_through_plugin_and_upstream_applier_reads_it(registered, tmp_path, llama_dir, form):
    """EasyEdit's own spilt experiment YAML trains through the plugin into ``spilt_<form>/``, and EasyEdit's
    own spilt applier, reading the plugin's ``.pt``, gives the plugin's logits."""
    from steer.vector_appliers.spilt.apply_spilt import apply_spilt
    from steer.vector_appliers.spilt.apply_spilt_hparam import ApplySpiltHyperParams
    from steer.vector_generators.vector_generators import BaseVectorGenerator

    from easyedit_split.easyedit.easyedit_hparams import EasyEditApplySplitHyperParams
    from easyedit_split.easyedit.entry_points import apply_split

    upstream_yaml = (EASYEDIT / "hparams/Steer/experiment_hparams/spilt_experiment/psychopathy/qwen2.5-7b-it/spilt"
                     / f"generate_spilt_{form}.yaml")
    cfg = _top_cfg(tmp_path, llama_dir, steer_train_hparam_paths=[str(upstream_yaml)], layers=[1], batch_size=2,
                   low_rank_dimension=2, max_num_of_examples=4)
    BaseVectorGenerator(cfg).generate_vectors({"psychopathy": PAIRS})
    folder = tmp_path / "vectors" / "psychopathy" / f"spilt_{form}"
    assert (folder / "layer_1.pt").exists()

    from easyedit_split.easyedit.host import load_wrapper

    ours = EasyEditApplySplitHyperParams(alg_name="spilt", layers=[1], multipliers=[2.0], intervention_method=form,
                                         steer_vector_load_dir=str(folder), model_name_or_path=str(llama_dir))
    wrapper = load_wrapper(ours)
    base = _logits(wrapper)
    apply_split(ours, wrapper)
    plugin_logits = _logits(wrapper)
    wrapper.reset_all()
    assert torch.equal(_logits(wrapper), base)

    theirs = ApplySpiltHyperParams(layers=[1], multipliers=[2.0], intervention_method=form,
                                   steer_vector_load_dir=str(folder), model_name_or_path=str(llama_dir))
    apply_spilt(theirs, wrapper)
    assert torch.allclose(_logits(wrapper), plugin_logits, atol=1e-5)
    assert not torch.allclose(plugin_logits, base)


# ------------------------------------------------------------------------------------------ opt-in auto-registration


def _run_easyedit_script(script: Path, overrides: list[str], cwd: Path, site_dir: Path) -> subprocess.CompletedProcess:
    """Run one of EasyEdit's unmodified scripts in a fresh interpreter whose site-packages is ``site_dir``
    (where ``easyedit-split easyedit enable --site-dir`` wrote the .pth), as a subprocess would see it."""
    code = textwrap.dedent(f"""
        import runpy, site, sys
        sys.path[:0] = [{str(REPO)!r}]
        site.addsitedir({str(site_dir)!r})
        sys.path.insert(1, {str(EASYEDIT)!r})
        sys.argv = [{str(script)!r}] + {overrides!r}
        runpy.run_path({str(script)!r}, run_name="__main__")
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASYEDIT_SPLIT_")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=cwd, env=env,
                          check=False)


def test_enable_makes_easyedit_scripts_use_the_plugin(tmp_path, llama_dir):
    """`easyedit-split easyedit enable`, then EasyEdit's own vectors_generate.py and vectors_apply.py
    (as run_SPILT.py launches them) train and apply alg_name: split; `disable` removes the hook."""
    from easyedit_split.cli import main

    site_dir = tmp_path / "site"
    assert main(["easyedit", "enable", "--site-dir", str(site_dir)]) == 0
    run = tmp_path / "run"
    (run / "data" / "psychopathy").mkdir(parents=True)
    (run / "hparams").symlink_to(EASYEDIT / "hparams")
    rows = [{"question": p["question"], "answer_matching_behavior": p["matching"],
             "answer_not_matching_behavior": p["not_matching"]} for p in PAIRS]
    for split in ("train", "test"):
        (run / "data" / "psychopathy" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    train_yaml = _train_hparams(tmp_path, "lora")
    apply_yaml = _apply_hparams(tmp_path, "lora")
    gen = _run_easyedit_script(EASYEDIT / "vectors_generate.py", [
        f"model_name_or_path={llama_dir}", "device=cpu", "dtype=float32", "steer_train_dataset=[psychopathy]",
        f"steer_train_hparam_paths=[{train_yaml}]", f"steer_vector_output_dirs=[{tmp_path / 'vectors'}]"], run, site_dir)
    assert gen.returncode == 0, gen.stdout[-3000:] + gen.stderr[-3000:]
    assert "registered into steer.utils.alg_dict" in gen.stderr
    folder = tmp_path / "vectors" / "psychopathy" / "split_lora"
    assert (folder / "layer_1.pt").exists()
    out_dir = tmp_path / "generation"
    app = _run_easyedit_script(EASYEDIT / "vectors_apply.py", [
        f"model_name_or_path={llama_dir}", "device=cpu", "dtype=float32", f"apply_steer_hparam_paths=[{apply_yaml}]",
        f"steer_vector_load_dir=[{folder}]", "generation_data=[psychopathy]", f"generation_output_dir={out_dir}",
        "generation_params.max_new_tokens=2", "generation_params.do_sample=false", "+vllm_enable=false"], run, site_dir)
    assert app.returncode == 0, app.stdout[-3000:] + app.stderr[-3000:]
    results = json.loads((out_dir / "psychopathy_results.json").read_text())
    assert len(results) == len(PAIRS)

    assert main(["easyedit", "status", "--site-dir", str(site_dir)]) == 0
    assert main(["easyedit", "disable", "--site-dir", str(site_dir)]) == 0
    assert not (site_dir / "easyedit_split_autoregister.pth").exists()


# ------------------------------------------------------------------------------------------ Evaluator


@pytest.mark.parametrize("alg_name", ["split", "caa"])
def test_evaluator_preference_utility_equals_package_sweep(registered, tmp_path, llama_dir, tiny_tokenizer, alg_name):
    """EasyEdit's own Evaluator with eval_methods ['preference_utility', 'fluency'] on the steering EasyEdit's
    applier put on its wrapper (the plugin's split, and EasyEdit's own caa) gives the package's sweep numbers
    at the applied multiplier; distinctness still runs through EasyEdit's code."""
    from steer.evaluate.evaluate import Evaluator
    from steer.vector_appliers.vector_applier import BaseVectorApplier

    from easyedit_split.core.sites import Site
    from easyedit_split.core.updates import VectorUpdate
    from easyedit_split.easyedit.entry_points import dataset_to_pairs
    from easyedit_split.evaluation.sweep import sweep

    vec = torch.randn(32, generator=torch.Generator().manual_seed(3))
    cfg = _top_cfg(tmp_path, llama_dir, apply_steer_hparam_paths=[_apply_hparams(tmp_path, "vector", alg_name=alg_name)])
    applier = BaseVectorApplier(cfg)
    applier.apply_vectors({alg_name: {"layer_1": vec}})
    results = applier.generate({"gen": [{"input": PAIRS[0]["question"]}]}, save_results=False,
                               max_new_tokens=2, do_sample=False)
    evaluator = Evaluator(eval_methods=["preference_utility", "distinctness"], save_results=False,
                          model=applier.model, preference_utility_data=PAIRS)
    out = evaluator.evaluate(results, "gen")
    assert "dist-1" in out and evaluator.eval_methods == ["preference_utility", "distinctness"]
    pu = out["preference_utility"]
    assert pu["multiplier"] == 3.0 and pu["n_pairs"] == len(PAIRS)

    plain = tiny_model("llama")
    update = VectorUpdate(Site(1, "residual"), 32, vector=vec)
    # the sweep as `easyedit-split sweep` runs it on a bare .pt (no recorded rendering): the config's
    # system_prompt '' means "no system prompt" in EasyEdit, and the Evaluator renders it so (issue #18)
    table = sweep(plain, tiny_tokenizer, dataset_to_pairs(PAIRS), [update], [0.0, 3.0], progress=False,
                  encode_kwargs={})
    at_m = table[table["m"] == 3.0].reset_index(drop=True)
    ours = [(r["pref_odds"], r["util_odds"]) for r in pu["per_example"]]
    assert torch.allclose(torch.tensor(ours, dtype=torch.float64),
                          torch.tensor(at_m[["pref_odds", "util_odds"]].to_numpy()), atol=1e-5)
    assert abs(pu["pref_odds"] - at_m["pref_odds"].mean()) < 1e-5
    unsteered = table[table["m"] == 0.0]["pref_odds"].to_numpy()
    assert abs(unsteered - at_m["pref_odds"].to_numpy()).max() > 1e-3  # the steering is really evaluated
    applier.model.reset_all()


def test_evaluator_preference_utility_needs_the_model(registered):
    from steer.evaluate.evaluate import Evaluator

    with pytest.raises(ValueError, match="pass model="):
        Evaluator(eval_methods=["preference_utility"], save_results=False).evaluate([], "gen")


# ------------------------------------------------------------------------------------------ run_SPILT.py run folder


def test_prepared_run_folder_and_comparison_report(registered, tmp_path, llama_dir, monkeypatch):
    """`easyedit prepare` makes a run folder run_SPILT.py routes to the shipped configs; EasyEdit's generator run
    there with them (as run_SPILT.py's vectors_generate.py does: upstream caa as is, spilt through the plugin)
    writes the vectors directory that `easyedit report` turns into one comparison with the provenance of each row.
    (The full run_SPILT.py subprocess chain takes minutes even on a tiny model; the README records it on SmolLM2.)"""
    import re

    from steer.datasets import prepare_train_dataset
    from steer.vector_generators.vector_generators import BaseVectorGenerator

    from easyedit_split.cli import main
    from easyedit_split.easyedit.run_folder import CONFIG_DIR

    run = tmp_path / "run"
    assert main(["easyedit", "prepare", "--checkout", str(EASYEDIT), "--into", str(run), "--model", str(llama_dir),
                 "--model-name", "tiny-llama", "--train-pairs", "4", "--test-pairs", "2", "--heldout-pairs", "6",
                 "--dtype", "float32"]) == 0
    assert (run / "models" / "tiny-llama").resolve() == llama_dir.resolve()
    assert len((run / "data/psychopathy/heldout.jsonl").read_text().splitlines()) == 6
    assert "dtype: float32" in (run / CONFIG_DIR / "config.yaml").read_text()
    assert (EASYEDIT / CONFIG_DIR / "config.yaml").read_text() == \
        (run / CONFIG_DIR / "config.yaml").read_text().replace(
            "dtype: float32  # easyedit-split easyedit prepare --dtype (EasyEdit's copy said: dtype: bfloat16)", "dtype: bfloat16")
    configs = run / CONFIG_DIR / "psychopathy" / "tiny-llama"
    for y in configs.glob("*/*.yaml"):  # the shipped configs are for SmolLM2's 30 layers; the tiny model has 4
        y.write_text(re.sub(r"layers: \[15\]", "layers: [1]", y.read_text()))

    dry = subprocess.run([sys.executable, "examples/run_SPILT.py", "--dataset", "psychopathy", "--method", "all",
                          "--model_name", "tiny-llama", "--intervention_method", "vector", "--device", "cpu", "--dry_run"],
                         cwd=run, capture_output=True, text=True, timeout=120, check=False)
    assert dry.returncode == 0 and "not found" not in dry.stdout, dry.stdout[-2000:]
    for method in ("caa", "sft", "reps", "spilt"):
        assert f"steer_train_hparam_paths=[{configs / method}/generate_{method}" in dry.stdout
        assert f"apply_steer_hparam_paths=[{configs / method}/apply_{method}.yaml]" in dry.stdout

    monkeypatch.chdir(run)  # EasyEdit reads hparams/Steer/dataset_format.yaml and ./data relative to the run folder
    for method, leaf in (("caa", "generate_caa.yaml"), ("spilt", "generate_spilt_vector.yaml")):
        cfg = OmegaConf.load(run / CONFIG_DIR / "config.yaml")  # run_SPILT.py's overrides of vectors_generate.py
        cfg.device, cfg.model_name_or_path = "cpu", "./models/tiny-llama"
        cfg.steer_train_dataset, cfg.steer_train_hparam_paths = ["psychopathy"], [str(configs / method / leaf)]
        cfg.steer_vector_output_dirs = [f"vectors/tiny-llama/{method}"]
        BaseVectorGenerator(cfg).generate_vectors(prepare_train_dataset(cfg))
    out = tmp_path / "report"
    assert main(["easyedit", "report", str(run / "vectors" / "tiny-llama"), "--output", str(out),
                 "--multipliers=-1,0,1"]) == 0
    provenance = json.loads((out / "provenance.json").read_text())["runs"]
    assert {(r["name"], r["implementation"]) for r in provenance} == {("caa", "EasyEdit"), ("spilt", "easyedit-split")}
    spilt = next(r for r in provenance if r["name"] == "spilt")
    assert "cannot run on transformers 5" in spilt["detail"]
    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == {"caa", "spilt"} and results["settings"]["n_pairs"] == 6
    report = (out / "report.md").read_text()
    assert "| caa | `caa/psychopathy/caa_vector` | 1 | EasyEdit |" in report
    assert "| spilt | `spilt/psychopathy/spilt_vector` | 1 | easyedit-split |" in report


# ------------------------------------------------------------------------------------------ scaffold (issue #18, item 5)


def test_scaffold_runs_easyedits_scripts_verbatim(tmp_path, llama_dir):
    """`easyedit-split easyedit scaffold --model M --out DIR` writes a llama-named model folder, the data layout and
    the hydra configs; the two commands it prints (EasyEdit's unmodified vectors_generate.py and vectors_apply.py,
    --config-path/--config-name) run as printed, in a shell, after `easyedit enable`."""
    import contextlib
    import io

    from easyedit_split.cli import main

    site_dir, boot = tmp_path / "site", tmp_path / "boot"
    assert main(["easyedit", "enable", "--site-dir", str(site_dir)]) == 0
    boot.mkdir()
    (boot / "sitecustomize.py").write_text(f"import site; site.addsitedir({str(site_dir)!r})\n")
    out = tmp_path / "scaffold"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["easyedit", "scaffold", "--checkout", str(EASYEDIT), "--model", str(llama_dir), "--layer", "1",
                     "--train-pairs", "4", "--test-pairs", "1", "--out", str(out)]) == 0
    text = printed.getvalue()
    assert f"models/{llama_dir.name} -> links to {llama_dir}" in text
    commands = [line.strip() for line in text.splitlines() if "vectors_" in line and "--config-name" in line]
    assert len(commands) == 2 and all(c.startswith(f"cd {out} && {sys.executable} ") for c in commands)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASYEDIT_SPLIT_")}
    env.update(PYTHONPATH=f"{boot}{os.pathsep}{REPO}", OMP_NUM_THREADS="1")
    for command in commands:
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=600, env=env, check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (out / "vectors" / "psychopathy" / "split_vector" / "layer_1.pt").is_file()
    results = json.loads((out / "generation" / "psychopathy_results.json").read_text())
    assert len(results) == 1
    assert main(["easyedit", "disable", "--site-dir", str(site_dir)]) == 0
