"""Tiny random models of several architectures, built in milliseconds for unit tests."""

from __future__ import annotations

import torch
import transformers
from transformers import AutoModelForCausalLM

VOCAB = 97


def _common(**kw):
    base = {"vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 4,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128,
            "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    base.update(kw)
    return base


_GEMMA_KW = {"head_dim": 8, "sliding_window": 4, "final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0,
             "query_pre_attn_scalar": 8}

#: architecture → (config class name in transformers, config keyword arguments). Every Llama-shaped
#: decoder the site tests cover; a class missing from the installed transformers is skipped.
TINY_CONFIGS: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", _common()),
    "mistral": ("MistralConfig", _common()),
    "qwen2": ("Qwen2Config", _common()),
    "qwen3": ("Qwen3Config", _common(head_dim=8)),
    "phi3": ("Phi3Config", _common()),
    "olmo2": ("Olmo2Config", _common()),
    "gemma2": ("Gemma2Config", _common(**_GEMMA_KW)),
    "gemma3_text": ("Gemma3TextConfig", _common(**{**_GEMMA_KW, "attn_logit_softcapping": None})),
    "gpt2": ("GPT2Config", {"vocab_size": VOCAB, "n_embd": 32, "n_layer": 4, "n_head": 4, "n_positions": 128,
                            "bos_token_id": 1, "eos_token_id": 2}),
    "gpt_neox": ("GPTNeoXConfig", {"vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 48,
                                   "num_hidden_layers": 4, "num_attention_heads": 4, "max_position_embeddings": 128,
                                   "bos_token_id": 1, "eos_token_id": 2}),
    "mixtral": ("MixtralConfig", _common(num_local_experts=4, num_experts_per_tok=2)),
    "cohere": ("CohereConfig", _common()),
    "starcoder2": ("Starcoder2Config", _common()),
    "granite": ("GraniteConfig", _common(residual_multiplier=0.5, logits_scaling=2.0)),
    "deepseek_v3": ("DeepseekV3Config", _common(num_key_value_heads=4, n_routed_experts=4, num_experts_per_tok=2, first_k_dense_replace=1,
                                                moe_intermediate_size=16, q_lora_rank=None, kv_lora_rank=8,
                                                qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8, n_group=1,
                                                topk_group=1)),
}


def available_archs() -> list[str]:
    """The architectures of :data:`TINY_CONFIGS` whose config class the installed transformers has."""
    return [arch for arch, (cls, _) in TINY_CONFIGS.items() if hasattr(transformers, cls)]


def tiny_config(arch: str):
    if arch not in TINY_CONFIGS:
        raise ValueError(arch)
    cls_name, kwargs = TINY_CONFIGS[arch]
    return getattr(transformers, cls_name)(**kwargs)


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
