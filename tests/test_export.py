"""Export of a merged model as a plain Hugging Face checkpoint: reload logits equal the hooked model's."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from easyedit_split.core.apply import MergeError, apply_updates
from easyedit_split.core.export import EXPORT_INFO, ExportError, export_merged
from easyedit_split.core.sites import Site
from tests.test_core import random_update
from tests.tiny_models import tiny_inputs, tiny_model

CASES = [
    ("vector", "residual"),
    ("vector", "mlp_down"),
    ("lora", "mlp_down"),
    ("local_weight", "mlp_down"),
    ("vector", "attn_out"),
    ("lora", "attn_out"),
    ("local_weight", "attn_out"),
]


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("form,component", CASES)
def test_exported_checkpoint_equals_hooked_model(tmp_path, arch, form, component, tiny_tokenizer):
    model = tiny_model(arch)
    ids = tiny_inputs()
    u = random_update(model, form, Site(1, component))
    before = _state(model)
    with torch.no_grad():
        base = model(input_ids=ids).logits
        with apply_updates(model, u, 1.3):
            hooked = model(input_ids=ids).logits
    assert (hooked - base).abs().max() > 1e-3
    out = tmp_path / "merged"
    result = export_merged(model, tiny_tokenizer, u, 1.3, out)
    # the in-memory model is unchanged: same parameter names (no leftover bias) and values
    after = model.state_dict()
    assert set(after) == set(before)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not list(tmp_path.glob(".merged*"))  # no temporary folder left behind
    reloaded, info = AutoModelForCausalLM.from_pretrained(
        out, output_loading_info=True, attn_implementation="eager"
    )
    assert not any(info.values()), info  # no missing / unexpected / mismatched keys
    with torch.no_grad():
        exported = reloaded(input_ids=ids).logits
    assert (exported - hooked).abs().max() < 1e-5
    meta = json.loads((out / EXPORT_INFO).read_text())
    assert meta["multiplier"] == 1.3 and meta["config_changes"] == result.config_changes
    if arch == "llama" and form != "lora":
        flag = "mlp_bias" if component != "attn_out" else "attention_bias"
        assert result.config_changes == {flag: True}
        assert json.loads((out / "config.json").read_text())[flag] is True
        assert getattr(model.config, flag) is False  # live config restored


def test_gemma2_residual_vector_refuses(tmp_path):
    model = tiny_model("gemma2")
    u = random_update(model, "vector", Site(1, "residual"))
    with pytest.raises(MergeError, match="hook mode"):
        export_merged(model, None, u, 1.0, tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "arch,component", [("gemma2", "mlp_down"), ("qwen2", "mlp_down"), ("qwen2", "attn_out")]
)
def test_bias_without_config_flag_refuses_and_leaves_model_intact(tmp_path, arch, component):
    model = tiny_model(arch)
    before = _state(model)
    u = random_update(model, "vector", Site(1, component))
    with pytest.raises(ExportError, match=r"no config flag .*hook mode"):
        export_merged(model, None, u, 1.0, tmp_path / "x")
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)
    assert not (tmp_path / "x").exists() and not list(tmp_path.iterdir())


def test_lora_on_qwen2_exports(tmp_path):
    model = tiny_model("qwen2")
    ids = tiny_inputs()
    u = random_update(model, "lora", Site(2, "mlp_down"))
    with torch.no_grad(), apply_updates(model, u, -0.8):
        hooked = model(input_ids=ids).logits
    export_merged(model, None, u, -0.8, tmp_path / "q")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "q", attn_implementation="eager")
    with torch.no_grad():
        assert (reloaded(input_ids=ids).logits - hooked).abs().max() < 1e-5


def test_local_weight_with_zero_bias_needs_no_bias_flag(tmp_path):
    model = tiny_model("qwen2")
    u = random_update(model, "local_weight", Site(1, "mlp_down"))
    with torch.no_grad():
        u.bias.zero_()
    result = export_merged(model, None, u, 1.0, tmp_path / "z")
    assert result.config_changes == {} and result.zero_biases == []


def test_existing_output_needs_overwrite(tmp_path):
    model = tiny_model("llama")
    u = random_update(model, "lora", Site(1, "mlp_down"))
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("x")
    with pytest.raises(ExportError, match="already exists"):
        export_merged(model, None, u, 1.0, dest)
    # --overwrite replaces an earlier export, never a folder of other files
    with pytest.raises(ExportError, match="not an earlier export"):
        export_merged(model, None, u, 1.0, dest, overwrite=True)
    assert (dest / "old.txt").read_text() == "x"
    (dest / "old.txt").unlink()
    export_merged(model, None, u, 1.0, dest, overwrite=True)  # an empty folder
    (dest / "stale.txt").write_text("from the earlier export")
    export_merged(model, None, u, 2.0, dest, overwrite=True)  # an earlier export
    assert not (dest / "stale.txt").exists() and (dest / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_cli_export_reloads_equal_to_hooked(tmp_path, tiny_tokenizer, capsys):
    from easyedit_split.cli import main
    from easyedit_split.core.serialization import save_updates

    model = tiny_model("llama")
    model.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    u = random_update(model, "vector", Site(2, "residual"))
    save_updates(tmp_path / "u.safetensors", [u], model=model)
    argv = [
        "export",
        "--model",
        str(tmp_path / "model"),
        "--update",
        str(tmp_path / "u.safetensors"),
        "--multiplier",
        "-2.5",
        "--output",
        str(tmp_path / "out"),
    ]
    assert main(argv) == 0
    assert "mlp_bias=True" in capsys.readouterr().out
    ids = tiny_inputs()
    with torch.no_grad(), apply_updates(model, u, -2.5):
        hooked = model(input_ids=ids).logits
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out", attn_implementation="eager")
    with torch.no_grad():
        assert (reloaded(input_ids=ids).logits - hooked).abs().max() < 1e-5
    assert main(argv) == 2  # exists: a clear error, not an overwrite


def test_smollm2_export_with_residual_vector_reloads_exactly(tmp_path, smollm2_path):
    """The real model (tied embeddings, 30 layers): a residual vector becomes a down_proj bias."""
    from easyedit_split.core.models import load_model

    torch.set_num_threads(1)
    model, tok = load_model(smollm2_path)
    u = random_update(model, "vector", Site(12, "residual"))
    ids = tok("The weather today is", return_tensors="pt")["input_ids"]
    with torch.no_grad(), apply_updates(model, u, 2.0):
        hooked = model(input_ids=ids).logits
    result = export_merged(model, tok, u, 2.0, tmp_path / "smol")
    assert result.config_changes == {"mlp_bias": True}
    reloaded, info = AutoModelForCausalLM.from_pretrained(tmp_path / "smol", output_loading_info=True)
    assert not any(info.values()), info
    with torch.no_grad():
        assert (reloaded(input_ids=ids).logits - hooked).abs().max() < 1e-4
