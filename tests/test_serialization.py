import json

import pytest
import torch

from easyedit_split.core.apply import apply_updates
from easyedit_split.core.serialization import UpdateFileError, load_updates, save_updates
from easyedit_split.core.sites import Site
from tests.test_core import random_update
from tests.tiny_models import tiny_inputs, tiny_model


def test_round_trip_all_forms_gives_same_outputs(tmp_path):
    model = tiny_model("llama")
    ups = [random_update(model, "vector", Site(1, "residual")),
           random_update(model, "lora", Site(2, "mlp_down"), seed=1),
           random_update(model, "local_weight", Site(3, "attn_out"), seed=2)]
    path = save_updates(tmp_path / "u.safetensors", ups, model=model, method="split", hparams={"lr": 0.01})
    bundle = load_updates(path, model)
    assert bundle.method == "split" and bundle.hparams == {"lr": 0.01}
    assert bundle.model["model_type"] == "llama" and bundle.model["hidden_size"] == 32
    assert [u.form for u in bundle] == ["vector", "lora", "local_weight"]
    ids = tiny_inputs()
    with torch.no_grad():
        with apply_updates(model, ups, 1.5):
            a = model(input_ids=ids).logits
        with apply_updates(model, bundle.updates, 1.5):
            b = model(input_ids=ids).logits
    assert torch.equal(a, b)
    assert not list(tmp_path.glob(".*tmp"))  # no temp files left


def test_loading_onto_another_architecture_or_size_is_an_error(tmp_path):
    llama = tiny_model("llama")
    path = save_updates(tmp_path / "u.safetensors", [random_update(llama, "vector", Site(1, "residual"))], model=llama)
    with pytest.raises(UpdateFileError, match="'llama' model"):
        load_updates(path, tiny_model("qwen2"))
    assert len(load_updates(path, tiny_model("qwen2"), strict_model=False)) == 1
    gpt2 = tiny_model("gpt2")
    gpt2.config.n_embd = 64
    with pytest.raises(UpdateFileError, match="hidden size 32"):
        load_updates(path, gpt2)


def test_corrupt_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(UpdateFileError, match="does not exist"):
        load_updates(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(UpdateFileError, match="not a readable safetensors"):
        load_updates(bad)


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    model = tiny_model("llama")
    path = save_updates(tmp_path / "u.safetensors", [random_update(model, "vector", Site(1, "residual"))], model=model)
    before = path.read_bytes()
    import safetensors.torch

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_updates(path, [random_update(model, "lora", Site(1, "mlp_down"))], model=model)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.safetensors"]
    meta = json.loads(json.dumps(load_updates(path).model))
    assert meta["model_type"] == "llama"
