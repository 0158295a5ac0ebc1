import json

import pytest
import torch
from safetensors.torch import save_file

from easyedit_split.adapters.artefacts import ArtefactError, LoadedUpdates, is_diffmean_spec, load_artefact
from easyedit_split.core.serialization import save_updates
from easyedit_split.core.sites import Site
from tests.test_core import random_update
from tests.tiny_models import tiny_model


def test_load_artefact_dispatches_by_path(tmp_path):
    model = tiny_model("llama")
    vec = random_update(model, "vector", Site(2, "residual"))
    save_updates(tmp_path / "u.safetensors", [vec], model=model, method="split")
    got = load_artefact(tmp_path / "u.safetensors", model)
    assert got.kind == "easyedit-split" and got.method == "split"
    assert torch.equal(got.updates[0].delta_bias(), vec.delta_bias())
    torch.save({"proj.weight": vec.delta_bias().unsqueeze(0)}, tmp_path / "layer_2.pt")
    got = load_artefact(tmp_path / "layer_2.pt", model)
    assert got.kind == "easyedit-pt" and got.updates[0].site == Site(2, "residual")
    peft_dir = tmp_path / "peft"
    peft_dir.mkdir()
    (peft_dir / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4}))
    save_file({"base_model.model.model.layers.1.mlp.down_proj.lora_A.weight": torch.randn(2, 48),
               "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight": torch.randn(32, 2)},
              str(peft_dir / "adapter_model.safetensors"))
    got = load_artefact(peft_dir, model)
    assert got.kind == "peft" and got.updates[0].site.layer == 1
    edited = {k: v.clone() for k, v in model.state_dict().items()}
    edited["model.layers.3.mlp.down_proj.weight"] += 0.01
    save_file({"model.layers.3.mlp.down_proj.weight": edited["model.layers.3.mlp.down_proj.weight"].contiguous()},
              str(tmp_path / "edit.safetensors"))
    got = load_artefact(tmp_path / "edit.safetensors", model)
    assert got.kind == "edited-weights" and got.updates[0].site.layer == 3
    with pytest.raises(FileNotFoundError):
        load_artefact(tmp_path / "missing.pt", model)
    with pytest.raises(ValueError, match="unknown update file type"):
        (tmp_path / "x.bin").write_bytes(b"0")
        load_artefact(tmp_path / "x.bin", model)




def _pairs():
    from easyedit_split.data import PolarityPair

    qs = ["is the sky blue ?", "i like it", "is the film great ?", "write a short review of the pizza place"]
    return [PolarityPair(f"p{i}", q, "yes", "no", "t") for i, q in enumerate(qs)]


def test_diffmean_spec_uses_the_shipped_rendering_and_records_it(tmp_path, tiny_tokenizer):
    from easyedit_split.data.encoding import encode_pairs
    from easyedit_split.training.diffmean import default_diffmean_hparams, diffmean_update

    model = tiny_model("llama")
    assert is_diffmean_spec("diffmean@2") and is_diffmean_spec(" diffmean@2:residual ")
    assert not is_diffmean_spec("diffmean@x") and not is_diffmean_spec(tmp_path)
    loaded = load_artefact("diffmean@2", model, tokenizer=tiny_tokenizer, train_pairs=_pairs())
    assert loaded.kind == "diffmean" and loaded.updates[0].site == Site(2, "residual")
    # the shipped diffmean.yaml says: chat template on, empty system prompt (plugin rule); that is what was used and recorded
    assert loaded.rendering() == {"chat_template": True, "system_prompt": "", "prompt_rule": "plugin"}
    hp = default_diffmean_hparams(2)
    same = diffmean_update(model, tiny_tokenizer, encode_pairs(_pairs(), tiny_tokenizer, chat_template=True,
                                                               system_prompt=""), hp)
    assert torch.equal(same.vector, loaded.updates[0].vector)
    other = diffmean_update(model, tiny_tokenizer, encode_pairs(_pairs(), tiny_tokenizer, chat_template=True,
                                                                system_prompt=None), hp)
    assert not torch.allclose(other.vector, loaded.updates[0].vector)  # the rendering matters
    # saved with its hparams, the file reloads with the same rendering
    save_updates(tmp_path / "dm.safetensors", loaded.updates, model=model, method="diffmean",
                 hparams=loaded.info["hparams"])
    assert load_artefact(tmp_path / "dm.safetensors", model).rendering() == loaded.rendering()
    with pytest.raises(ArtefactError, match="training pairs"):
        load_artefact("diffmean@2", model, tokenizer=tiny_tokenizer)


def test_loaded_updates_pass_through_unchanged():
    model = tiny_model("llama")
    vec = random_update(model, "vector", Site(1, "residual"))
    loaded = LoadedUpdates([vec], "in-memory")
    assert load_artefact(loaded, model) is loaded
    assert load_artefact(vec, model).updates == [vec]
    with pytest.raises(TypeError):
        load_artefact(3, model)
