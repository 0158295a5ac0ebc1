"""Polarity-paired data: reading, splitting, shipped datasets, tokenisation, answer log-likelihoods."""

from __future__ import annotations

from easyedit_split.data.encoding import (
    EncodedPair,
    PromptBatch,
    SequenceBatch,
    collate_pairs,
    collate_prompts,
    collate_sequences,
    encode_pairs,
    pad_id_of,
    render_prompt,
)
from easyedit_split.data.formats import (
    BUILTIN_FORMATS,
    DataError,
    DatasetFormat,
    detect_format,
    get_format,
    pairs_from_records,
)
from easyedit_split.data.logprobs import answer_nll, last_token_logits, prompt_answer_nll, split_pairs
from easyedit_split.data.pairs import (
    BUILTIN_DATASETS,
    PolarityPair,
    builtin_dataset_path,
    iter_records,
    load_builtin,
    load_pairs,
    pair_digests,
    read_pairs,
    train_test_split,
    unique_pairs,
)

__all__ = [
    "BUILTIN_DATASETS",
    "BUILTIN_FORMATS",
    "DataError",
    "DatasetFormat",
    "EncodedPair",
    "PolarityPair",
    "PromptBatch",
    "SequenceBatch",
    "answer_nll",
    "builtin_dataset_path",
    "collate_pairs",
    "collate_prompts",
    "collate_sequences",
    "detect_format",
    "encode_pairs",
    "get_format",
    "iter_records",
    "last_token_logits",
    "load_builtin",
    "load_pairs",
    "pad_id_of",
    "pair_digests",
    "pairs_from_records",
    "prompt_answer_nll",
    "read_pairs",
    "render_prompt",
    "split_pairs",
    "train_test_split",
    "unique_pairs",
]
