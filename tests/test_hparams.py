import logging
from pathlib import Path

import pytest
import torch

from easyedit_split.base.hparams_io import HParamsError, load_yaml
from easyedit_split.base.methods import hparams_class
from easyedit_split.core.apply_hparams import ApplySplitHyperParams
from easyedit_split.training.hparams import (
    DiffMeanHyperParams,
    RePSHyperParams,
    SFTHyperParams,
    SplitHyperParams,
)
from tests.tiny_models import tiny_model

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures"


def test_upstream_layout_yaml_loads_without_warnings(caplog):
    with caplog.at_level(logging.WARNING):
        hp = SplitHyperParams.from_hparams(FIX / "upstream_generate_our_vector.yaml")
    assert "unknown keys" not in caplog.text
    assert hp.alg_name == "sft" and hp.objective == "split"  # upstream's SPLIT files say alg_name: sft
    assert (hp.lr, hp.n_epochs, hp.batch_size, hp.neg_loss_weight, hp.margin_penalty_weight) == (0.08, 2, 4, 0.6, 4.0)
    assert hp.steering_factors[-1] == 20.0 and hp.form == "vector" and hp.component == "residual"
    assert hp.preference_pairs == ["orig_add", "orig_sub"] and hp.margin_threshold == 0.5


def test_upstream_weight_yaml_maps_weight_and_mlp_mid():
    hp = SplitHyperParams.from_hparams(FIX / "upstream_generate_our_weight.yaml")
    assert hp.form == "local_weight" and hp.component == "mlp_down"
    assert hp.gradient_accumulation_steps == 2 and hp.margin_threshold == 0.4


def test_upstream_yaml_trains_unchanged_apart_from_model_and_layer(tmp_path, tiny_tokenizer):
    from easyedit_split.easyedit.entry_points import generate_split

    model = tiny_model("llama")
    data = [{"question": f"is the sky blue ? {w}", "matching": "yes", "not_matching": "no"}
            for w in ("i like it", "this film", "the food", "a review", "elm street", "the pizza place")]
    hp = SplitHyperParams.from_hparams(FIX / "upstream_generate_our_weight.yaml",
                                       overrides={"layers": [2], "steer_vector_output_dir": str(tmp_path)})
    out = generate_split(hp, data, model=(model, tiny_tokenizer))
    state = out["layer_2"]
    assert {"weight", "bias"} <= set(state) and state["intervention_components"] == "mlp_mid"
    assert state["weight"].shape == (48, 32)
    assert state["weight"].abs().sum() > 0
    pt = tmp_path / "split_local_weight" / "layer_2.pt"
    loaded = torch.load(pt, weights_only=True)
    assert torch.equal(loaded["weight"], state["weight"])
    assert (tmp_path / "split_local_weight" / "layer_2.safetensors").exists()


def test_unknown_keys_warn_by_name(caplog):
    with caplog.at_level(logging.WARNING):
        SplitHyperParams.from_dict({"alg_name": "split", "lr": 0.1, "bogus_key": 1, "another_one": 2}, source="x.yaml")
    assert "bogus_key" in caplog.text and "another_one" in caplog.text and "x.yaml" in caplog.text


def test_wrong_type_names_file_and_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("alg_name: split\nlr: fast\n")
    with pytest.raises(HParamsError, match=r"bad\.yaml.*'lr'"):
        SplitHyperParams.from_hparams(f)
    f.write_text("alg_name: split\nintervention_method: conv\n")
    with pytest.raises(HParamsError, match="intervention_method"):
        SplitHyperParams.from_hparams(f)
    f.write_text("alg_name: split\npreference_pairs: [steered_mul]\n")
    with pytest.raises(HParamsError, match="preference_pairs"):
        SplitHyperParams.from_hparams(f)


def test_alg_names_case_insensitive_and_aliases():
    assert SplitHyperParams.from_dict({"alg_name": "SPILT"}).method == "split"
    assert hparams_class("Spilt") is SplitHyperParams
    assert hparams_class("reps_vector") is RePSHyperParams
    assert hparams_class("caa") is DiffMeanHyperParams
    with pytest.raises(HParamsError, match="alg_name"):
        RePSHyperParams.from_dict({"alg_name": "split"})


def test_objective_resolution_quirks(caplog):
    assert RePSHyperParams.from_dict({"alg_name": "reps"}).objective == "reps"
    assert RePSHyperParams.from_dict({"alg_name": "reps", "loss_type": "dpo"}).objective == "dpo"
    with caplog.at_level(logging.WARNING):
        sft = SFTHyperParams.from_dict({"alg_name": "sft", "neg_loss_weight": 0.5})
    assert sft.objective == "split" and "SPLIT" in caplog.text
    assert SFTHyperParams.from_dict({"alg_name": "sft"}).objective == "sft"
    hp = SplitHyperParams.from_dict({"alg_name": "split", "intervention_method": "lora", "lora_alpha": 8,
                                     "low_rank_dimension": 4})
    assert hp.lora_scale() == 2.0 and hp.component == "mlp_down"


# steering YAMLs; hparams/*/editing/ holds EasyEdit knowledge-editing YAMLs (tests/test_editing.py loads those)
@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "hparams").rglob("*.yaml") if "editing" not in p.parts),
                         ids=lambda p: p.name)
def test_shipped_yamls_load(path, caplog):
    raw = load_yaml(path)
    cls = ApplySplitHyperParams if path.name.startswith("apply") else hparams_class(raw["alg_name"])
    with caplog.at_level(logging.WARNING):
        hp = cls.from_hparams(path)
    assert "unknown keys" not in caplog.text
    assert hp.layers


def test_apply_hparams_multipliers_checked():
    with pytest.raises(HParamsError, match="multipliers"):
        ApplySplitHyperParams.from_dict({"alg_name": "split", "layers": [1, 2], "multipliers": [1, 2, 3]})


@pytest.mark.parametrize("cls", [ApplySplitHyperParams, SplitHyperParams])
def test_layers_checked_alike_for_training_and_applying(cls):
    with pytest.raises(HParamsError, match=r"^cfg.yaml: key 'layers' must list at least one layer$"):
        cls.from_dict({"alg_name": "split", "layers": []}, source="cfg.yaml")
    with pytest.raises(HParamsError, match=r"^cfg.yaml: key 'layers' has \[-1\]; layers count from 0"):
        cls.from_dict({"alg_name": "split", "layers": [2, -1]}, source="cfg.yaml")
