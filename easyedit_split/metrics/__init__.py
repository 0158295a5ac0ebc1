"""Generation-quality metrics: perplexity under the unsteered model, distinct-n / repetition, a
linear-probe concept score, and an optional LLM judge (AxBench style, off by default).

Names are imported lazily from their submodules, so ``from easyedit_split.metrics import
judge_to_jsonl`` does not load torch or transformers, and scikit-learn loads only when a probe is fitted.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "distinct_n": "diversity",
    "diversity_summary": "diversity",
    "ngrams": "diversity",
    "repetition_rate": "diversity",
    "PerplexityResult": "fluency",
    "perplexity": "fluency",
    "ConceptProbe": "probe",
    "fit_concept_probe": "probe",
    "pooled_hidden_states": "probe",
    "JudgeConfig": "judge",
    "JudgeError": "judge",
    "JudgeItem": "judge",
    "harmonic_mean": "judge",
    "judge_to_jsonl": "judge",
    "parse_rating": "judge",
}

__all__ = [
    "ConceptProbe",
    "JudgeConfig",
    "JudgeError",
    "JudgeItem",
    "PerplexityResult",
    "distinct_n",
    "diversity_summary",
    "fit_concept_probe",
    "harmonic_mean",
    "judge_to_jsonl",
    "ngrams",
    "parse_rating",
    "perplexity",
    "pooled_hidden_states",
    "repetition_rate",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
