"""Knowledge-editing requests (CounterFact style): reading, and turning them into EasyEdit's and our inputs.

A request asks a model to complete ``prompt`` with ``target_new`` instead of ``ground_truth``; a
locality prompt with its answer is a fact the edit should leave alone. The shipped set is
``resources/data/counterfact_smollm2.jsonl`` (see the data README).

Two views of the same requests:

* :func:`edit_kwargs` — the arguments of EasyEdit's ``BaseEditor.edit`` (``prompts``,
  ``target_new``, ``ground_truth``, ``rephrase_prompts``, ``locality_inputs``, ``subject``);
* :func:`edit_pairs` / :func:`locality_pairs` — polarity pairs for the preference–utility evaluator.
  Edit pairs: question = prompt, positive = ``target_new``, negative = ``ground_truth``.
  Locality pairs: question = the locality prompt, positive = its true answer, negative = the same
  request's ``target_new``, so a PrefOdds that falls as ``m`` grows means the edit leaks its new
  answer into an unrelated prompt.

Answers are continuations of the prompt, with one leading space added as EasyEdit's editors do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from easyedit_split.data.formats import DataError
from easyedit_split.data.pairs import PolarityPair, iter_records
from easyedit_split.errors import InputError

__all__ = [
    "BUILTIN_REQUESTS",
    "EditRequest",
    "as_continuation",
    "builtin_requests_path",
    "edit_kwargs",
    "edit_pairs",
    "locality_pairs",
    "read_requests",
    "request_from_easyedit",
]

BUILTIN_REQUESTS = "counterfact_smollm2.jsonl"
_REQUIRED = ("subject", "prompt", "target_new", "ground_truth", "locality_prompt", "locality_ground_truth")
LOCALITY_KEY = "neighborhood"


@dataclass(frozen=True)
class EditRequest:
    case_id: str
    subject: str
    prompt: str
    target_new: str
    ground_truth: str
    locality_prompt: str
    locality_ground_truth: str
    rephrase_prompt: str | None = None
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def builtin_requests_path() -> Path:
    return Path(str(resources.files("easyedit_split") / "resources" / "data" / BUILTIN_REQUESTS))


def _request_from_record(rec: Any, where: str, index: int) -> EditRequest:
    if not isinstance(rec, Mapping):
        raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    for key in _REQUIRED:
        value = rec.get(key)
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: field {key!r} must be a non-empty string, got {value!r}")
    if rec["subject"] not in rec["prompt"]:
        raise DataError(f"{where}: subject {rec['subject']!r} does not occur in prompt {rec['prompt']!r}")
    if rec["target_new"].strip() == rec["ground_truth"].strip():
        raise DataError(f"{where}: target_new equals ground_truth ({rec['target_new']!r}); nothing to edit")
    if rec["target_new"].strip() == rec["locality_ground_truth"].strip():
        raise DataError(f"{where}: locality_ground_truth equals target_new ({rec['target_new']!r}); the locality "
                        "fact must not be the edit's new answer")
    rephrase = rec.get("rephrase_prompt")
    if rephrase is not None and (not isinstance(rephrase, str) or not rephrase.strip()):
        raise DataError(f"{where}: field 'rephrase_prompt' must be a non-empty string when given, got {rephrase!r}")
    return EditRequest(str(rec.get("case_id", index)), rec["subject"], rec["prompt"], rec["target_new"],
                       rec["ground_truth"], rec["locality_prompt"], rec["locality_ground_truth"], rephrase, where)


def read_requests(path: str | os.PathLike | None = None, *, limit: int | None = None,
                  skip: int = 0) -> list[EditRequest]:
    """Edit requests from a JSONL/JSON/CSV/Parquet file (one record each); default: the shipped set.
    ``skip`` drops the first requests (a validation slice, say), then ``limit`` keeps at most that many.

    A bad record is an error naming the file, the line (JSON: the record's 1-based index) and the field.
    """
    if skip < 0 or (limit is not None and limit < 1):
        raise DataError(f"edit requests: skip must be >= 0 and the limit >= 1 (got skip={skip}, limit={limit})")
    p = Path(path) if path is not None else builtin_requests_path()
    if not p.is_file():
        raise DataError(f"edit requests file not found: {p}")
    out: list[EditRequest] = []
    for n, rec in iter_records(p):
        if isinstance(rec, DataError):
            raise DataError(f"{p}:{n}: {rec}")
        out.append(_request_from_record(rec, f"{p}:{n}", len(out)))
    if not out:
        raise DataError(f"{p}: no edit requests")
    ids = [r.case_id for r in out]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DataError(f"{p}: duplicate case_id values {dup[:5]}")
    if skip >= len(out):
        raise DataError(f"{p}: skipping {skip} of its {len(out)} edit requests leaves none")
    out = out[skip:]
    return out[:limit] if limit else out


def as_continuation(answer: str) -> str:
    """The answer as a continuation of the prompt: one leading space, as EasyEdit's editors add."""
    return answer if answer[:1].isspace() else " " + answer


def edit_kwargs(requests: Sequence[EditRequest]) -> dict[str, Any]:
    """Keyword arguments of EasyEdit's ``BaseEditor.edit`` for ``requests``."""
    kw: dict[str, Any] = {
        "prompts": [r.prompt for r in requests],
        "target_new": [r.target_new for r in requests],
        "ground_truth": [r.ground_truth for r in requests],
        "subject": [r.subject for r in requests],
        "locality_inputs": {LOCALITY_KEY: {"prompt": [r.locality_prompt for r in requests],
                                           "ground_truth": [r.locality_ground_truth for r in requests]}},
    }
    if all(r.rephrase_prompt for r in requests):
        kw["rephrase_prompts"] = [r.rephrase_prompt for r in requests]
    return kw


def request_from_easyedit(request: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(prompt, target_new, ground_truth)`` of one request dict as EasyEdit's ``BaseEditor`` builds it.

    A ``{}`` in the prompt is filled with ``subject`` (EasyEdit's CounterFact convention).
    """
    prompt = request.get("prompt")
    target_new = request.get("target_new")
    ground_truth = request.get("ground_truth")
    if not isinstance(prompt, str) or not prompt:
        raise InputError(f"edit request has no prompt: {dict(request)!r}")
    if "{}" in prompt and request.get("subject"):
        prompt = prompt.format(request["subject"])
    if not isinstance(target_new, str) or not target_new.strip():
        raise InputError(f"edit request {prompt!r} has no target_new")
    if not isinstance(ground_truth, str) or not ground_truth.strip():
        raise InputError(f"edit request {prompt!r} has no ground_truth: SPLIT trains target_new against it, so "
                         "pass ground_truth= to BaseEditor.edit")
    return prompt, target_new, ground_truth


def edit_pairs(requests: Sequence[EditRequest]) -> list[PolarityPair]:
    """question = prompt, positive = target_new, negative = ground_truth (continuations)."""
    return [PolarityPair(f"edit-{r.case_id}", r.prompt, as_continuation(r.target_new),
                         as_continuation(r.ground_truth), r.source, {"subject": r.subject}) for r in requests]


def locality_pairs(requests: Sequence[EditRequest]) -> list[PolarityPair]:
    """question = locality prompt, positive = its true answer, negative = the request's target_new."""
    return [PolarityPair(f"locality-{r.case_id}", r.locality_prompt, as_continuation(r.locality_ground_truth),
                         as_continuation(r.target_new), r.source, {"subject": r.subject}) for r in requests]
