"""Dataset formats: which columns hold the question and the two polarities.

Upstream EasyEdit describes datasets in ``hparams/Steer/dataset_format.yaml``::

    train:                       # optional section (EasyEdit has ``train`` and ``generation``)
      my_dataset:
        file_path: ./data/my_dataset/train.jsonl      # or ``path``; ``hf_path`` is not supported
        field_names:
          question: prompt                              # standard name: actual column
          matching: correct_answer
          not_matching: wrong_answer

:meth:`DatasetFormat.from_yaml` reads that layout (a top-level mapping of dataset name → entry, with
or without the ``train``/``generation`` sections). Besides EasyEdit's standard names
(``question``/``input``, ``matching``, ``not_matching``) ``field_names`` may use this package's names
(``positive``, ``negative``, ``id``, ``concept``), and an entry may carry ``file_type`` and
``filter`` ({column: value}, equality).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

__all__ = ["BUILTIN_FORMATS", "DataError", "DatasetFormat", "detect_format", "get_format", "pairs_from_records"]


class DataError(ValueError):
    """Bad or missing data; the message names the file (and line, for row problems)."""


_FILE_TYPES = ("jsonl", "json", "csv", "parquet")
SUFFIX_TYPES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}

# standard field name (EasyEdit's or ours) -> DatasetFormat attribute
_FIELD_KEYS = {
    "question": "question_field",
    "input": "question_field",
    "prompt": "question_field",
    "matching": "positive_field",
    "positive": "positive_field",
    "not_matching": "negative_field",
    "negative": "negative_field",
    "id": "id_field",
    "concept": "concept_field",
    "concept_id": "concept_field",
}


@dataclass
class DatasetFormat:
    """Where the polarity-paired fields live in a data file."""

    path: str | os.PathLike | None = None
    file_type: str | None = None  # jsonl / json / csv / parquet; inferred from the suffix when None
    question_field: str | None = "question"  # None: no question column (the prompt is empty)
    positive_field: str = "answer_matching_behavior"
    negative_field: str = "answer_not_matching_behavior"
    id_field: str | None = None
    concept_field: str | None = None
    filter: dict[str, Any] = field(default_factory=dict)
    name: str | None = None

    def __post_init__(self) -> None:
        if self.path is not None:
            self.path = Path(self.path)
        if self.file_type is None and self.path is not None:
            self.file_type = SUFFIX_TYPES.get(Path(self.path).suffix.lower(), "jsonl")
        if self.file_type is not None:
            self.file_type = str(self.file_type).lower()
            if self.file_type not in _FILE_TYPES:
                raise DataError(
                    f"unsupported file_type {self.file_type!r}; use one of {', '.join(_FILE_TYPES)}"
                )
        self.filter = dict(self.filter or {})

    def with_path(self, path: str | os.PathLike) -> DatasetFormat:
        return replace(self, path=Path(path), file_type=None)

    def read(self, *, strict: bool = False, limit: int | None = None):
        """Read this format's own file (see :func:`easyedit_split.data.read_pairs`)."""
        from .pairs import read_pairs

        if self.path is None:
            raise DataError(f"dataset format {self.name or ''!r} has no file path")
        return read_pairs(self.path, self, strict=strict, limit=limit)

    @classmethod
    def from_mapping(
        cls, entry: dict, *, name: str | None = None, base_dir: Path | None = None
    ) -> DatasetFormat:
        """Build from one ``dataset_format.yaml`` entry (see the module docstring)."""
        if not isinstance(entry, dict):
            raise DataError(f"dataset format entry {name!r} must be a mapping, got {type(entry).__name__}")
        raw_path = entry.get("file_path", entry.get("path"))
        if raw_path is None and entry.get("hf_path"):
            raise DataError(
                f"dataset {name!r} names only a Hugging Face hub dataset (hf_path); give a file_path"
            )
        path = _resolve_path(raw_path, base_dir) if raw_path is not None else None

        fields = entry.get("field_names") or {}
        if not isinstance(fields, dict):
            raise DataError(f"dataset {name!r}: field_names must be a mapping")
        kwargs: dict[str, Any] = {}
        for std, actual in fields.items():
            attr = _FIELD_KEYS.get(str(std))
            if attr is None:
                logger.debug("dataset %r: ignoring field_names key %r", name, std)
                continue
            if attr == "question_field" and "question_field" in kwargs and std != "question":
                continue  # ``question`` wins over ``input``/``prompt`` when both are given
            kwargs[attr] = None if actual in (None, "") else str(actual)
        if "question_field" not in kwargs:
            kwargs["question_field"] = None  # EasyEdit: question is optional
        for attr in ("positive_field", "negative_field"):
            if not kwargs.get(attr):
                raise DataError(
                    f"dataset {name!r}: field_names must map 'matching' and 'not_matching' "
                    f"(or 'positive' and 'negative') to columns"
                )
        flt = entry.get("filter") or {}
        if not isinstance(flt, dict):
            raise DataError(f"dataset {name!r}: filter must be a mapping of column to value")
        return cls(path=path, file_type=entry.get("file_type"), filter=flt, name=name, **kwargs)

    @classmethod
    def from_yaml(
        cls, path: str | os.PathLike, name: str | None = None, *, section: str | None = None
    ) -> DatasetFormat:
        """Read an EasyEdit-style ``dataset_format.yaml`` (``yaml.safe_load`` only).

        ``name`` picks the dataset when the file describes several (required then). ``section``
        restricts the search to ``train`` or ``generation``; by default ``train`` is searched first.
        A relative ``file_path`` is resolved against the YAML file's folder when it exists there,
        otherwise against the working directory (EasyEdit's convention).
        """
        ypath = Path(path)
        if not ypath.is_file():
            raise DataError(f"dataset format file not found: {ypath}")
        try:
            doc = yaml.safe_load(ypath.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise DataError(f"could not parse {ypath}: {exc}") from exc
        if not isinstance(doc, dict):
            raise DataError(f"{ypath}: expected a mapping of dataset names to entries")

        entries = _collect_entries(doc, section)
        if not entries:
            raise DataError(f"{ypath}: no dataset entries (each needs file_path and field_names)")
        if name is None:
            if len(entries) > 1:
                raise DataError(f"{ypath} describes several datasets ({', '.join(entries)}); pass name=")
            name = next(iter(entries))
        if name not in entries:
            raise DataError(f"dataset {name!r} not in {ypath}; it has {', '.join(entries)}")
        return cls.from_mapping(entries[name], name=name, base_dir=ypath.parent)


def _is_entry(value: Any) -> bool:
    return isinstance(value, dict) and any(
        k in value for k in ("file_path", "path", "hf_path", "field_names")
    )


def _collect_entries(doc: dict, section: str | None) -> dict[str, dict]:
    if _is_entry(doc):  # a single entry at top level
        return {"dataset": doc}
    sections = [section] if section else ["train", "generation"]
    entries: dict[str, dict] = {}
    for sec in sections:
        block = doc.get(sec)
        if isinstance(block, dict):
            for key, value in block.items():
                if _is_entry(value):
                    entries.setdefault(str(key), value)
    if section is None:
        for key, value in doc.items():
            if _is_entry(value):
                entries.setdefault(str(key), value)
    return entries


def _resolve_path(raw: Any, base_dir: Path | None) -> Path:
    p = Path(str(raw)).expanduser()
    if p.is_absolute() or base_dir is None:
        return p
    beside = base_dir / p
    if beside.exists() or not p.exists():
        return beside
    return p


BUILTIN_FORMATS: dict[str, DatasetFormat] = {
    "persona": DatasetFormat(
        question_field="question",
        positive_field="answer_matching_behavior",
        negative_field="answer_not_matching_behavior",
        name="persona",
    ),
    "powerseeking": DatasetFormat(
        question_field="question",
        positive_field="matching",
        negative_field="not_matching",
        name="powerseeking",
    ),
    "axbench": DatasetFormat(
        question_field="input",
        positive_field="winning_output",
        negative_field="losing_output",
        concept_field="concept_id",
        name="axbench",
    ),
}
_FORMAT_ALIASES = {"psychopathy": "persona", "power-seeking": "powerseeking", "power_seeking": "powerseeking"}


def get_format(name: str) -> DatasetFormat:
    """A built-in format by name (``persona``/``psychopathy``, ``powerseeking``, ``axbench``)."""
    key = str(name).strip().lower()
    key = _FORMAT_ALIASES.get(key, key)
    if key not in BUILTIN_FORMATS:
        choices = ", ".join(sorted(set(BUILTIN_FORMATS) | set(_FORMAT_ALIASES) | {"auto"}))
        raise DataError(f"unknown dataset format {name!r}; choose one of {choices} or pass a DatasetFormat")
    return replace(BUILTIN_FORMATS[key])


def detect_format(columns: Iterable[str], *, source: str = "data") -> DatasetFormat:
    """Pick the built-in format whose answer columns are all present."""
    cols = set(columns)
    for key in ("persona", "axbench", "powerseeking"):
        fmt = BUILTIN_FORMATS[key]
        if {fmt.positive_field, fmt.negative_field} <= cols:
            fmt = replace(fmt)
            if fmt.question_field not in cols:
                fmt.question_field = None
            return fmt
    raise DataError(
        f"cannot detect the format of {source}: columns {sorted(cols)} match none of "
        f"persona (answer_matching_behavior/answer_not_matching_behavior), axbench "
        f"(winning_output/losing_output) or powerseeking (matching/not_matching); pass a DatasetFormat"
    )


# ------------------------------------------------------------------------ EasyEdit in-memory records

#: keys of EasyEdit's in-memory records (steering data loaders, persona files, AxBench), first match wins
_RECORD_QUESTION_KEYS = ("question", "input", "prompt")
_RECORD_POSITIVE_KEYS = ("matching", "answer_matching_behavior", "winning_output", "positive")
_RECORD_NEGATIVE_KEYS = ("not_matching", "answer_not_matching_behavior", "losing_output", "negative")


def _first_present(record: Mapping[str, Any], keys: Sequence[str], where: str) -> Any:
    for k in keys:
        if k in record and record[k] is not None:
            return record[k]
    raise DataError(f"{where}: none of the fields {list(keys)} present (keys: {sorted(record)})")


def pairs_from_records(records: Iterable[Any], name: str = "dataset") -> list:
    """Polarity pairs from EasyEdit's in-memory dataset: a list of dicts (``question``/``matching``/
    ``not_matching``, persona keys, or AxBench's ``input``/``winning_output``/``losing_output``; a list
    answer counts by its first entry) or of :class:`~easyedit_split.data.pairs.PolarityPair`."""
    from .pairs import PolarityPair  # pairs imports this module

    items = list(records)
    if items and isinstance(items[0], tuple):
        raise NotImplementedError("multi-concept datasets (a list of (concept_id, rows)) are not supported; "
                                  "train one concept at a time")
    out = []
    for i, rec in enumerate(items):
        if isinstance(rec, PolarityPair):
            out.append(rec)
            continue
        if not isinstance(rec, Mapping):
            raise TypeError(f"{name}[{i}]: expected a dict, got {type(rec).__name__}")
        where = f"{name}[{i}]"
        q = _first_present(rec, _RECORD_QUESTION_KEYS, where)
        pos = _first_present(rec, _RECORD_POSITIVE_KEYS, where)
        neg = _first_present(rec, _RECORD_NEGATIVE_KEYS, where)
        if isinstance(pos, list):
            pos = pos[0]
        if isinstance(neg, list):
            neg = neg[0]
        if not str(pos).strip() or not str(neg).strip():
            raise DataError(f"{where}: empty answer")
        out.append(PolarityPair(id=str(rec.get("id", i)), question=str(q), positive=str(pos), negative=str(neg),
                                source=f"{name}:{i + 1}"))
    if not out:
        raise DataError(f"{name}: no examples")
    return out
