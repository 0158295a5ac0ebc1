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

:func:`read_pairs` reads a file with a format (detected from the columns, by name, or given); the rows
themselves are read and checked by :mod:`easyedit_split.data.records`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from easyedit_split.base.hparams_io import read_yaml_mapping
from easyedit_split.data.records import (
    DataError,
    PolarityPair,
    check_data_file,
    first_entry,
    infer_file_type,
    iter_records,
    pairs_from_rows,
    peek_columns,
)

logger = logging.getLogger(__name__)

__all__ = [
    "BUILTIN_FORMATS",
    "NEGATIVE_COLUMNS",
    "POSITIVE_COLUMNS",
    "QUESTION_COLUMNS",
    "DataError",
    "DatasetFormat",
    "detect_format",
    "find_column",
    "get_format",
    "normalize_column",
    "pairs_from_records",
    "read_pairs",
    "resolve_columns",
]

_FILE_TYPES = ("jsonl", "json", "csv", "parquet")

#: column names accepted for each role, in order of preference (the same names as the in-memory API);
#: matched after :func:`normalize_column` (case, surrounding whitespace, a spreadsheet's BOM)
QUESTION_COLUMNS = ("question", "input", "prompt")
POSITIVE_COLUMNS = ("answer_matching_behavior", "matching", "winning_output", "positive")
NEGATIVE_COLUMNS = ("answer_not_matching_behavior", "not_matching", "losing_output", "negative")
ID_COLUMNS = ("id",)
CONCEPT_COLUMNS = ("concept_id", "concept")


def normalize_column(name: Any) -> str:
    """``" Question\ufeff"`` → ``"question"``: no BOM, no surrounding whitespace, lower case, ``-``/space → ``_``."""
    text = str(name).replace("\ufeff", "").strip().lower()
    return "_".join(text.replace("-", " ").split())


def find_column(columns: Iterable[str], wanted: str | Iterable[str]) -> str | None:
    """The actual column for ``wanted`` (a name or aliases in order): exact first, then normalised."""
    cols = list(columns)
    names = [wanted] if isinstance(wanted, str) else list(wanted)
    for name in names:
        if name in cols:
            return name
    by_norm: dict[str, str] = {}
    for c in cols:
        by_norm.setdefault(normalize_column(c), c)
    for name in names:
        if normalize_column(name) in by_norm:
            return by_norm[normalize_column(name)]
    return None


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
            self.file_type = infer_file_type(Path(self.path))
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
        doc = read_yaml_mapping(ypath, error=DataError, what="dataset format file")

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
    """The format of a file from its columns: question, positive and negative answer columns are found
    among :data:`QUESTION_COLUMNS`, :data:`POSITIVE_COLUMNS`, :data:`NEGATIVE_COLUMNS` (case- and
    whitespace-insensitive). A column that cannot be mapped is a :class:`DataError` naming the file
    and its columns: a file is never read with its prompts silently dropped."""
    cols = list(columns)
    pos, neg = find_column(cols, POSITIVE_COLUMNS), find_column(cols, NEGATIVE_COLUMNS)
    question = find_column(cols, QUESTION_COLUMNS)
    if pos is None or neg is None or question is None:
        missing = [role for role, col, names in (("question", question, QUESTION_COLUMNS),
                                                  ("positive answer", pos, POSITIVE_COLUMNS),
                                                  ("negative answer", neg, NEGATIVE_COLUMNS)) if col is None]
        wanted = "; ".join(f"{role}: one of {', '.join(names)}" for role, names in
                           (("question", QUESTION_COLUMNS), ("positive answer", POSITIVE_COLUMNS),
                            ("negative answer", NEGATIVE_COLUMNS)))
        raise DataError(
            f"cannot map the columns of {source}: no {' / '.join(missing)} column among {sorted(cols)}. "
            f"Name the columns ({wanted}; case and spaces do not matter), or describe them in a "
            f"dataset_format.yaml / DatasetFormat (question_field=None trains on answers alone)"
        )
    name = next((key for key, fmt in BUILTIN_FORMATS.items()
                 if (fmt.positive_field, fmt.negative_field) == (normalize_column(pos), normalize_column(neg))), "auto")
    return DatasetFormat(question_field=question, positive_field=pos, negative_field=neg,
                         id_field=find_column(cols, ID_COLUMNS), concept_field=find_column(cols, CONCEPT_COLUMNS),
                         name=name)


def resolve_columns(fmt: DatasetFormat, columns: Iterable[str], *, source: str = "data") -> DatasetFormat:
    """``fmt`` with each field name replaced by the file's actual column (matched case- and
    whitespace-insensitively); a required column that is absent is a :class:`DataError` naming the file,
    the field and the file's columns."""
    cols = list(columns)
    changes: dict[str, Any] = {}
    missing = []
    for attr, required in (("question_field", True), ("positive_field", True), ("negative_field", True),
                           ("id_field", False), ("concept_field", False)):
        wanted = getattr(fmt, attr)
        if wanted is None:
            continue
        actual = find_column(cols, wanted)
        if actual is None and required:
            missing.append(f"{attr.removesuffix('_field')} column {wanted!r}")
        changes[attr] = actual
    if missing:
        raise DataError(f"{source}: format {fmt.name or 'custom'!r} needs {', '.join(missing)}, but the file's "
                        f"columns are {sorted(cols)}; rename the columns or give the right field_names")
    return replace(fmt, **changes)


# ------------------------------------------------------------------------ EasyEdit in-memory records


def _first_present(record: Mapping[str, Any], keys: Sequence[str], where: str) -> Any:
    """The first of ``keys`` present (and not None) in ``record``, matched as file columns are."""
    present = [k for k, v in record.items() if v is not None and isinstance(k, str)]
    key = find_column(present, keys)
    if key is not None:
        return record[key]
    raise DataError(f"{where}: none of the fields {list(keys)} present (keys: {sorted(record)})")


def pairs_from_records(records: Iterable[Any], name: str = "dataset") -> list[PolarityPair]:
    """Polarity pairs from EasyEdit's in-memory dataset: a list of dicts (``question``/``matching``/
    ``not_matching``, persona keys, or AxBench's ``input``/``winning_output``/``losing_output``; a list
    answer counts by its first entry) or of :class:`~easyedit_split.data.records.PolarityPair`."""
    items = list(records)
    if items and isinstance(items[0], tuple):
        raise DataError(f"{name}: multi-concept datasets (a list of (concept_id, rows)) are not supported; "
                        "train one concept at a time")
    out = []
    for i, rec in enumerate(items):
        if isinstance(rec, PolarityPair):
            out.append(rec)
            continue
        if not isinstance(rec, Mapping):
            raise DataError(f"{name}[{i}]: expected a dict, got {type(rec).__name__}")
        where = f"{name}[{i}]"
        q = _first_present(rec, QUESTION_COLUMNS, where)
        pos = _first_present(rec, POSITIVE_COLUMNS, where)
        neg = _first_present(rec, NEGATIVE_COLUMNS, where)
        pos, neg = first_entry(pos), first_entry(neg)
        if not str(pos).strip() or not str(neg).strip():
            raise DataError(f"{where}: empty answer")
        # the other fields (e.g. upstream's '<type>_steered_input'/'_steered_output') are kept, as a file's are
        meta = {k: v for k, v in rec.items() if k not in (*QUESTION_COLUMNS, *POSITIVE_COLUMNS, *NEGATIVE_COLUMNS, "id")}
        out.append(PolarityPair(id=str(rec.get("id", i)), question=str(q), positive=str(pos), negative=str(neg),
                                source=f"{name}:{i + 1}", meta=meta))
    if not out:
        raise DataError(f"{name}: no examples")
    return out


# ------------------------------------------------------------------------------------------- reading


def read_pairs(
    path: str | os.PathLike,
    format: str | DatasetFormat = "auto",
    *,
    strict: bool = False,
    limit: int | None = None,
) -> list[PolarityPair]:
    """Read polarity pairs from a jsonl/json/csv/parquet file.

    ``format`` is ``"auto"`` (detect from the columns), a built-in format name (``persona``,
    ``psychopathy``, ``powerseeking``, ``axbench``) or a :class:`DatasetFormat`; a DatasetFormat's own
    ``path`` is ignored in favour of ``path``. Column names are matched case- and whitespace-insensitively
    (a spreadsheet's BOM is dropped); ``auto`` accepts the in-memory API's names (``question``/``input``/
    ``prompt``, …) and a column that cannot be mapped is a :class:`DataError` naming the file and its
    columns. Text is UTF-8 (with or without BOM) or UTF-16 with a BOM. Bad rows (bytes that are not
    UTF-8, missing or non-string field, empty answer, identical answers, unparseable JSON line) are skipped with one warning each naming ``file:line``,
    or, with ``strict=True``, reported together in a :class:`DataError`. ``limit`` caps the number of
    pairs returned (rows are read in file order).
    """
    path = Path(path)
    check_data_file(path)
    if isinstance(format, DatasetFormat):
        fmt = format
        file_type = fmt.file_type if fmt.path is None or Path(fmt.path) == path else infer_file_type(path)
    else:
        file_type = infer_file_type(path)
        fmt = None if str(format).lower() == "auto" else get_format(str(format))
    columns = peek_columns(path, file_type)
    if not columns:
        first = next((r for _, r in iter_records(path, file_type) if not isinstance(r, DataError)), None)
        what = "no records" if first is None else f"no record with named fields (the first is a {type(first).__name__})"
        raise DataError(f"{path} holds {what}; a data file holds records such as {{\"question\": …, \"matching\": …, "
                        "\"not_matching\": …}} (one JSON object per line in .jsonl, a list of them in .json, rows under a "
                        "header in .csv)")
    source = str(path)
    fmt = detect_format(columns, source=source) if fmt is None else resolve_columns(fmt, columns, source=source)
    return pairs_from_rows(path, file_type, fmt, strict=strict, limit=limit)
