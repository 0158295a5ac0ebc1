"""Every EasyEdit steering method as an update, checked against EasyEdit's own code.

The artefacts are written by EasyEdit's generators (from the unmodified checkout that
:mod:`tests.easyedit_checkout` finds) on a tiny random Llama saved in a folder whose name contains
"llama" (EasyEdit's wrapper picks its class from the path), and each
update is compared with EasyEdit's own applier: the logits of its wrapped model against ours in
hook mode. Tests that need the checkout skip with a reason when it is absent.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
import torch

from easyedit_split.adapters.builders import AdapterError, from_easyedit_pt, from_edited_weights
from easyedit_split.adapters.lm_steer import from_lm_steer
from easyedit_split.adapters.prompt_baseline import PromptBaseline
from easyedit_split.adapters.sae import load_sae, sae_feature_update, sta_update_from_scores
from easyedit_split.core.apply import apply_updates
from easyedit_split.core.easyedit_layout import (
    from_easyedit_state,
    layer_from_filename,
    sidecar_path,
    to_easyedit_state,
    write_easyedit_pt,
)
from easyedit_split.core.export import export_merged
from easyedit_split.core.sites import Site
from easyedit_split.core.updates import LocalWeightUpdate, LoRAUpdate, VectorUpdate
from tests.easyedit_checkout import require_steering, save_tiny_llama, steer_on_path
from tests.tiny_models import tiny_inputs, tiny_model

DATA = [
    {"question": "is the sky blue ?", "matching": "yes", "not_matching": "no"},
    {"question": "i like this film", "matching": "great", "not_matching": "awful"},
    {"question": "write a short review of the pizza place", "matching": "great food", "not_matching": "awful food"},
]
TOL = 1e-5


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def max_diff(a, b) -> float:
    return float((a - b).abs().max())


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def easyedit():
    """EasyEdit's checkout on sys.path (its steering side imports as ``steer``)."""
    with steer_on_path(require_steering()) as root:
        yield root


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A tiny random Llama (weights of ``tiny_model('llama')``) and tokenizer in a folder named *llama*."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), model_max_length=128)  # EasyEdit's trainers truncate to it


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama")


IDS = tiny_inputs()


def ee_train(alg: str, llama_dir: Path, out: Path, data=DATA, **kw):
    """Run EasyEdit's registered train entry for ``alg`` in-process (its ``BaseVectorGenerator`` step)."""
    from steer.utils.alg_dict import HYPERPARAMS_CLASS_DICT, get_method_fn

    hp = HYPERPARAMS_CLASS_DICT[alg]["train"](model_name_or_path=str(llama_dir), device="cpu",
                                              steer_vector_output_dir=str(out), **kw)
    return get_method_fn(alg, "train")(hp, data, dataset_name="tiny")


def ee_logits(alg: str, llama_dir: Path, **kw):
    """Logits of EasyEdit's wrapped model after EasyEdit's own ``apply_<alg>``."""
    from steer.models.get_model import get_model
    from steer.utils.alg_dict import HYPERPARAMS_CLASS_DICT, get_method_fn

    hp = HYPERPARAMS_CLASS_DICT[alg]["apply"](model_name_or_path=str(llama_dir), device="cpu", **kw)
    wrapper, _ = get_model(hp)
    wrapper = get_method_fn(alg, "apply")(hp, wrapper)
    return logits(wrapper.model, IDS)


def ours(model, update, m):
    with apply_updates(model, update, m):
        return logits(model, IDS)


# ------------------------------------------------------------------------------------------ vectors


def test_caa_vector_reads_at_its_layer_and_matches_easyedit(easyedit, llama_dir, model, tmp_path):
    vectors = ee_train("caa", llama_dir, tmp_path, layers=[2])
    path = tmp_path / "caa_vector" / "layer_2.pt"
    u = from_easyedit_pt(path, model)  # no layer given: the file name says it
    assert isinstance(u, VectorUpdate) and u.site == Site(2, "residual")
    assert torch.equal(u.vector.detach(), vectors["layer_2"].float())
    ref = ee_logits("caa", llama_dir, layers=[2], multipliers=[2.0], steer_vector_load_dir=str(path.parent))
    assert max_diff(ours(model, u, 2.0), ref) < TOL
    assert max_diff(ours(model, u, 2.0), logits(model, IDS)) > 1e-3  # the vector does something


def test_vector_prompt_matches_easyedit_and_a_nan_vector_is_refused(easyedit, llama_dir, model, tmp_path):
    data = [{"input": r["question"], "output": r["matching"], "prompt": "answer yes"} for r in DATA]
    ee_train("vector_prompt", llama_dir, tmp_path / "ok", data=data, layers=[1])
    path = tmp_path / "ok" / "vector_prompt_vector" / "layer_1.pt"
    u = from_easyedit_pt(path, model)
    ref = ee_logits("vector_prompt", llama_dir, layers=[1], multipliers=[1.5], steer_vector_load_dir=str(path.parent))
    assert max_diff(ours(model, u, 1.5), ref) < TOL

    bare = [{"question": r["question"]} for r in DATA]  # no input/output: upstream averages over zero tokens
    ee_train("vector_prompt", llama_dir, tmp_path / "nan", data=bare, layers=[1])
    bad = tmp_path / "nan" / "vector_prompt_vector" / "layer_1.pt"
    assert torch.isnan(torch.load(bad, weights_only=True)).any()
    with pytest.raises(AdapterError, match=r"layer_1\.pt.*NaN.*`input`/`output`"):
        from_easyedit_pt(bad, model)


def test_merge_vector_infers_its_layer_and_matches_easyedit(easyedit, llama_dir, model, tmp_path):
    # upstream's registered train entry names a module that does not exist
    # (steer.vector_generators.merge.generate_merge_vector); its merge code lives in generate_merge_vectors
    from steer.utils.alg_dict import HYPERPARAMS_CLASS_DICT
    from steer.vector_generators.merge.generate_merge_vectors import generate_merge_vector

    ee_train("caa", llama_dir, tmp_path, layers=[2, 3])
    paths = [str(tmp_path / "caa_vector" / f"layer_{layer}.pt") for layer in (3, 2)]  # named after the first
    hp = HYPERPARAMS_CLASS_DICT["merge_vector"]["train"](vector_paths=paths, method="ties", weights=[1.0, 0.5],
                                                        densities=[1.0, 1.0], steer_vector_output_dir=str(tmp_path))
    merged = generate_merge_vector(hp)["layer_3_merged_vector"]
    path = tmp_path / "merge_vector" / "layer_3_merged_vector.pt"
    assert layer_from_filename(path) == 3
    u = from_easyedit_pt(path, model)
    assert u.site == Site(3, "residual") and torch.allclose(u.vector.detach(), merged.float())
    ref = ee_logits("merge_vector", llama_dir, layers=[3], multipliers=[3.0], steer_vector_load_dir=str(path.parent))
    assert max_diff(ours(model, u, 3.0), ref) < TOL


# ------------------------------------------------------------------------------------------ trained forms

# reps, sft and spilt share one applier layout (their appliers differ only in names), so every
# form is run through spilt and one form each through sft and reps
TRAINED = [("spilt", "vector"), ("spilt", "lora"), ("spilt", "local_weight"), ("sft", "local_weight"),
           ("reps", "vector")]


@pytest.mark.parametrize(("alg", "form"), TRAINED)
def test_trained_artefacts_match_easyedit_applier(easyedit, llama_dir, model, tmp_path, alg, form):
    # use_chat_template=False: upstream's chat-template path fails on transformers 5 (SNAPSHOT.md)
    ee_train(alg, llama_dir, tmp_path, layers=[1], intervention_method=form, n_epochs=1, batch_size=3,
             gradient_accumulation_steps=1, lr=0.05, use_chat_template=False,
             low_rank_dimension=1 if form == "vector" else 4)
    path = tmp_path / f"{alg}_{form}" / "layer_1.pt"
    u = from_easyedit_pt(path, model)
    expected = {"vector": (VectorUpdate, "residual"), "lora": (LoRAUpdate, "mlp_down"),
                "local_weight": (LocalWeightUpdate, "mlp_down")}[form]
    assert isinstance(u, expected[0]) and u.site == Site(1, expected[1])
    ref = ee_logits(alg, llama_dir, layers=[1], multipliers=[1.5], intervention_method=form,
                    steer_vector_load_dir=str(path.parent))
    assert max_diff(ours(model, u, 1.5), ref) < TOL
    assert max_diff(ours(model, u, 1.5), logits(model, IDS)) > 1e-4


@pytest.mark.parametrize("form", ["lora", "local_weight"])
def test_files_we_write_are_read_by_easyedits_spilt_applier(easyedit, llama_dir, model, tmp_path, form):
    torch.manual_seed(3)
    if form == "lora":
        u = LoRAUpdate(Site(2, "mlp_down"), 48, 32, rank=3, scale=2.5, A=torch.randn(3, 48) * 0.2, B=torch.randn(32, 3) * 0.2)
    else:
        u = LocalWeightUpdate(Site(2, "mlp_down"), 48, 32, weight=torch.randn(32, 48) * 0.1, bias=torch.randn(32) * 0.1)
    write_easyedit_pt(tmp_path / "layer_2.pt", u)
    state = torch.load(tmp_path / "layer_2.pt", weights_only=True)
    assert state["intervention_components"] == "mlp_mid" and state["concept_id"] == 0
    ref = ee_logits("spilt", llama_dir, layers=[2], multipliers=[-1.5], intervention_method=form,
                    steer_vector_load_dir=str(tmp_path))
    assert max_diff(ours(model, u, -1.5), ref) < TOL
    back = from_easyedit_pt(tmp_path / "layer_2.pt", model)
    assert torch.allclose(back.delta_weight(), u.delta_weight(), atol=1e-6)


# ------------------------------------------------------------------------------------------ lm_steer


@pytest.mark.parametrize(("adaptor", "rank"), [("multiply", 3), ("multiply", 20), ("add", 3), ("offset", 3)])
def test_lm_steer_checkpoint_is_an_lm_head_update(easyedit, llama_dir, model, tmp_path, adaptor, rank):
    ee_train("lm_steer", llama_dir, tmp_path, adaptor_class=adaptor, rank=rank, num_steers=2, n_steps=3,
             batch_size=2, lr=0.05, epsilon=0.01, init_var=0.1)
    path = tmp_path / "lm_steer_vector" / "lm_steer_vector.pt"
    steer_values = [3.0, 1.0]
    u = from_easyedit_pt(path, model, steer_values=steer_values)  # epsilon from the checkpoint
    assert u.site.module_path == "lm_head"
    assert isinstance(u, LoRAUpdate if adaptor == "multiply" else VectorUpdate)
    ref = ee_logits("lm_steer", llama_dir, adaptor_class=adaptor, rank=rank, num_steers=2, epsilon=0.01,
                    steer_values=steer_values, steer_vector_load_dir=str(path.parent))
    base = logits(model, IDS)
    assert max_diff(ours(model, u, 1.0), ref) < TOL
    assert max_diff(ref, base) > 1e-4
    # m scales the steer values linearly
    half = from_lm_steer(path, model, [1.5, 0.5])
    assert max_diff(ours(model, half, 1.0), ours(model, u, 0.5)) < TOL


def test_lm_steer_reader_refuses_other_globals(tmp_path, model):
    import argparse

    path = tmp_path / "lm_steer_vector.pt"
    torch.save([argparse.Namespace(epsilon=1.0), {"add_vec": torch.zeros(2, 32)}, 0], path)
    with pytest.raises(AdapterError, match="refusing to unpickle.*Namespace"):
        from_easyedit_pt(path, model, steer_values=[1.0, 0.0])
    with pytest.raises(AdapterError, match="steer_values"):
        from_easyedit_pt(path, model)


# ------------------------------------------------------------------------------------------ SAE methods


def write_sae(folder: Path, d_in=32, d_sae=24, layer=1, seed=0) -> Path:
    """A tiny SAE in SAELens's on-disk layout (standard ReLU architecture)."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True)
    save_file({"W_enc": torch.randn(d_in, d_sae, generator=g), "b_enc": torch.randn(d_sae, generator=g) * 0.1,
               "W_dec": torch.randn(d_sae, d_in, generator=g) * 0.3, "b_dec": torch.randn(d_in, generator=g) * 0.1},
              str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": d_in, "d_sae": d_sae,
                                                 "apply_b_dec_to_input": True, "normalize_activations": "none",
                                                 "hook_name": f"blocks.{layer}.hook_resid_post"}))
    return folder


@pytest.fixture()
def sae_lens_stub(monkeypatch, easyedit):
    """EasyEdit's SAE modules import sae_lens at module level; when it is not installed, stand-ins
    let them import (the SAE itself is read by ``easyedit_split.adapters.sae.load_sae``, patched in below)."""
    if importlib.util.find_spec("sae_lens") is None:
        for name, attrs in {"sae_lens": {"SAE": object}, "sae_lens.loading": {},
                            "sae_lens.loading.pretrained_sae_loaders": {"get_gemma_2_config_from_hf": None,
                                                                        "handle_config_defaulting": None}}.items():
            monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))
    for mod in ("steer.vector_generators.sae_feature.generate_sae_feature_vectors",
                "steer.vector_generators.sta.generate_sta_vectors"):
        module = __import__(mod, fromlist=["load_sae"])
        monkeypatch.setattr(module, "load_sae", lambda path, device="cpu", release=None: (load_sae(path), {}, None))


def test_sae_feature_vector_is_easyedits_decoder_rows(sae_lens_stub, llama_dir, model, tmp_path):
    from steer.utils.alg_dict import HYPERPARAMS_CLASS_DICT, get_method_fn

    sae_dir = write_sae(tmp_path / "sae_layer_1")
    ids, strengths = [3, 7, 11], [0.5, -1.0, 2.0]
    hp = HYPERPARAMS_CLASS_DICT["sae_feature"]["train"](layer=1, sae_path=str(sae_dir), release=None, sae_id=None,
                                                       position_ids=ids, strengths=strengths,
                                                       steer_vector_output_dir=str(tmp_path / "out"))
    get_method_fn("sae_feature", "train")(hp)
    path = tmp_path / "out" / "sae_feature_vector" / "layer_1.pt"
    u = sae_feature_update(sae_dir, model, 1, ids, strengths)
    W_dec = load_sae(sae_dir).W_dec
    assert torch.allclose(u.vector.detach(), 0.5 * W_dec[3] - W_dec[7] + 2.0 * W_dec[11], atol=1e-6)
    assert torch.allclose(from_easyedit_pt(path, model).vector.detach(), u.vector.detach(), atol=1e-6)
    ref = ee_logits("sae_feature", llama_dir, layers=[1], multipliers=[1.0], steer_vector_load_dir=str(path.parent))
    assert max_diff(ours(model, u, 1.0), ref) < TOL
    with pytest.raises(AdapterError, match="trained on layer 1"):
        sae_feature_update(sae_dir, model, 2, ids, strengths)


def test_sta_vector_from_easyedits_scores(sae_lens_stub, llama_dir, model, tmp_path):
    sae_dir = write_sae(tmp_path / "sae_layer_1")
    out = tmp_path / "out"
    vectors = ee_train("sta", llama_dir, out, layers=[1], sae_paths=[str(sae_dir)], trims=[0.5], mode="act_and_freq")
    path = out / "sta_vector" / "layer_1_act_and_freq_trim0.5.pt"
    assert layer_from_filename(path) == 1
    from_file = from_easyedit_pt(path, model)
    rebuilt = sta_update_from_scores(out, sae_dir, model, 1, trim=0.5)
    assert torch.allclose(rebuilt.vector.detach(), vectors["layer_1_act_and_freq_trim0.5"].float(), atol=1e-5)
    assert torch.allclose(from_file.vector.detach(), rebuilt.vector.detach(), atol=1e-5)
    assert torch.allclose(rebuilt.vector.norm(), vectors["layer_1"].norm(), atol=1e-4)  # rescaled to CAA's norm
    ref = ee_logits("sta", llama_dir, layers=[1], multipliers=[1.0], trims=[0.5], mode="act_and_freq",
                    steer_vector_load_dir=str(path.parent))
    assert max_diff(ours(model, rebuilt, 1.0), ref) < TOL


# ------------------------------------------------------------------------------------------ prompt


def test_prompt_baseline_renders_as_easyedits_applier(easyedit, llama_dir, tiny_tokenizer):
    from steer.models.get_model import get_model
    from steer.utils.alg_dict import HYPERPARAMS_CLASS_DICT, get_method_fn
    from steer.vector_appliers.vector_applier import BaseVectorApplier

    hp = HYPERPARAMS_CLASS_DICT["prompt"]["apply"](model_name_or_path=str(llama_dir), device="cpu",
                                                  prompt="answer like a pirate")
    wrapper, _ = get_model(hp)
    wrapper = get_method_fn("prompt", "apply")(hp, wrapper)
    applier = object.__new__(BaseVectorApplier)  # only its input rendering is used
    applier.model, applier.tokenizer = wrapper, wrapper.tokenizer
    applier.config = types.SimpleNamespace(system_prompt="", use_chat_template=False)
    baseline = PromptBaseline.from_hparams({"alg_name": "prompt", "prompt": "answer like a pirate"})
    from easyedit_split.data.pairs import PolarityPair

    pairs = [PolarityPair(id="0", question="is the sky blue ?", positive="yes", negative="no", source="t")]
    prompted = baseline.apply_to_pairs(pairs)
    assert prompted[0].question == applier._process_input_text("is the sky blue ?")
    assert prompted[0].positive == "yes" and baseline.updates == () and baseline.form == "prompt"
    with pytest.raises(ValueError, match="generate_prompt_params"):
        PromptBaseline.from_hparams({"alg_name": "prompt", "prompt": "x", "generate_prompt_params": {"max_new_tokens": 5}})


# ------------------------------------------------------------------------------------------ layout, no EasyEdit


def test_attn_out_vector_keeps_its_site_through_the_pt_file(tmp_path, model):
    v = VectorUpdate(Site(2, "attn_out"), 32, vector=torch.randn(32))
    path = write_easyedit_pt(tmp_path / "layer_2.pt", v)
    assert isinstance(torch.load(path, weights_only=True), torch.Tensor)  # still EasyEdit's bare-tensor layout
    back = from_easyedit_pt(path, model)
    assert back.site == Site(2, "attn_out") and torch.equal(back.vector.detach(), v.vector.detach())
    # a residual vector written over it removes the stale site record
    write_easyedit_pt(path, VectorUpdate(Site(2, "residual"), 32, vector=torch.randn(32)))
    assert not sidecar_path(path).exists() and from_easyedit_pt(path, model).site == Site(2, "residual")
    # LoRA / local weight name their site inside the dict
    lora = LoRAUpdate(Site(1, "attn_out"), 32, 32, rank=2, A=torch.randn(2, 32), B=torch.randn(32, 2))
    state = to_easyedit_state(lora)
    assert state["intervention_components"] == "attn_out" and state["r"] == 2
    assert from_easyedit_state(state, model, 1).site == Site(1, "attn_out")


def test_layout_errors_name_the_file_and_the_cause(tmp_path, model):
    torch.save({"lora_A": torch.randn(32, 2), "lora_B": torch.randn(2, 32), "intervention_components": "block"},
               tmp_path / "layer_1.pt")
    with pytest.raises(AdapterError, match=r"layer_1\.pt.*'block'.*block input"):
        from_easyedit_pt(tmp_path / "layer_1.pt", model)
    torch.save(torch.randn(3, 32), tmp_path / "layer_2.pt")
    with pytest.raises(AdapterError, match="3 concept vectors; pass concept_id"):
        from_easyedit_pt(tmp_path / "layer_2.pt", model)
    assert from_easyedit_pt(tmp_path / "layer_2.pt", model, concept_id=1).site == Site(2, "residual")
    torch.save(torch.full((32,), float("inf")), tmp_path / "vec.pt")
    with pytest.raises(AdapterError, match="cannot infer the layer from the file name 'vec.pt'"):
        from_easyedit_pt(tmp_path / "vec.pt", model)
    with pytest.raises(AdapterError, match=r"vec\.pt.*NaN/infinite"):
        from_easyedit_pt(tmp_path / "vec.pt", model, layer=0)


# ------------------------------------------------------------------------------------------ knowledge edits


@pytest.mark.parametrize("form", ["vector", "lora", "local_weight"])
def test_export_round_trips_through_from_edited_weights(tmp_path, tiny_tokenizer, form):
    model = tiny_model("llama")
    torch.manual_seed(5)
    update = {
        "vector": VectorUpdate(Site(1, "residual"), 32, vector=torch.randn(32) * 0.5),
        "lora": LoRAUpdate(Site(2, "mlp_down"), 48, 32, rank=2, scale=2.0, A=torch.randn(2, 48) * 0.3,
                           B=torch.randn(32, 2) * 0.3),
        "local_weight": LocalWeightUpdate(Site(0, "mlp_down"), 48, 32, weight=torch.randn(32, 48) * 0.1,
                                          bias=torch.randn(32) * 0.2),
    }[form]
    m = 1.5
    target = ours(model, update, m)
    export_merged(model, tiny_tokenizer, update, m, tmp_path / "export")
    back = from_edited_weights(model, tmp_path / "export")
    assert len(back) == 1
    u = back[0]
    # a residual vector folds into the down-projection's (new) bias: the same update on that module
    assert u.site == (Site(1, "mlp_down") if form == "vector" else update.site)
    for got, want in ((u.delta_weight(), update.delta_weight()), (u.delta_bias(), update.delta_bias())):
        if want is None:
            assert got is None or not bool(got.abs().any())
        else:
            assert torch.allclose(got, m * want, atol=1e-6)
    assert max_diff(ours(model, u, 1.0), target) < TOL


def test_lm_steer_checkpoint_on_the_command_line_takes_steer_values(easyedit, llama_dir, tmp_path, capsys):
    """`easyedit-split sweep --update lm_steer_vector.pt --steer-values 3,1` (issue #18 item 6): without the
    values the error names the CLI option; with them the sweep runs."""
    from easyedit_split.cli import main

    ee_train("lm_steer", llama_dir, tmp_path, adaptor_class="add", rank=3, num_steers=2, n_steps=2,
             batch_size=2, lr=0.05, epsilon=0.01, init_var=0.1)
    path = tmp_path / "lm_steer_vector" / "lm_steer_vector.pt"
    args = ["sweep", "--update", str(path), "--model", str(llama_dir), "--n-pairs", "3", "--multipliers=-1,0,1",
            "--output", str(tmp_path / "out")]
    assert main(args) == 2
    assert "--steer-values" in capsys.readouterr().err
    assert main([*args, "--steer-values", "3,1"]) == 0
    assert list((tmp_path / "out").iterdir())
