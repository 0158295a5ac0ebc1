"""The README's Python API example runs verbatim (on a tiny random model instead of SmolLM2)."""

import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

import easyedit_split
from easyedit_split.data import load_builtin
from tests.conftest import build_tiny_tokenizer
from tests.tiny_models import VOCAB

ROOT = Path(__file__).resolve().parent.parent


def readme_python_api_block(page: str = "README.md") -> str:
    text = (ROOT / page).read_text(encoding="utf-8")
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


@pytest.mark.parametrize("page", ["README.md", "docs/user-guide.md"])
def test_readme_python_api_example_runs_verbatim(tmp_path, monkeypatch, page):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=16,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    tok = build_tiny_tokenizer()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    monkeypatch.setattr(easyedit_split, "load_model", lambda *a, **k: (model, tok), raising=False)
    # 112 real pairs: the example's 100 held out, 12 to train on (keeps the test cheap)
    monkeypatch.setattr(easyedit_split, "load_pairs", lambda name: load_builtin(name, limit=112), raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hparams").symlink_to(ROOT / "hparams")
    code = readme_python_api_block(page)
    namespace: dict = {}
    exec(compile(code, page, "exec"), namespace)  # noqa: S102 - the project's own README
    assert (tmp_path / "split_vector.safetensors").exists() and (tmp_path / "eval" / "report.md").exists()
    assert namespace["ev"].only.fits["pref"] is not None
