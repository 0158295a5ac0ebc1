"""Tiny random models of several architectures, built in milliseconds for unit tests."""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    Qwen2Config,
)

VOCAB = 97


def _common(**kw):
    base = {"vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 4,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128}
    base.update(kw)
    return base


def tiny_config(arch: str):
    if arch == "llama":
        return LlamaConfig(**_common())
    if arch == "qwen2":
        return Qwen2Config(**_common())
    if arch == "gemma2":
        return Gemma2Config(**_common(head_dim=8, sliding_window=4, final_logit_softcapping=30.0,
                                      attn_logit_softcapping=50.0, query_pre_attn_scalar=8))
    if arch == "gpt2":
        return GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=4, n_head=4, n_positions=128)
    if arch == "gpt_neox":
        return GPTNeoXConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
                             num_attention_heads=4, max_position_embeddings=128)
    raise ValueError(arch)


def tiny_model(arch: str = "llama", seed: int = 0):
    torch.manual_seed(seed)
    cfg = tiny_config(arch)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    # random (non-zero) biases and norms so merges and sites are exercised for real
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or "ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def tiny_inputs(batch: int = 3, seq: int = 7, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, seq), generator=g)
