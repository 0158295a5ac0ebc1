"""EasyEdit's editing benchmarks (ZsRE, CounterFact, KnowEdit JSON) as edit requests, read by EasyEdit's own
dataset classes.

``read_easyedit_dataset(data_type, path)`` builds ``easyeditor.ZsreDataset`` / ``CounterFactDataset`` /
``KnowEditDataset`` on the file (so a record is kept or dropped exactly as EasyEdit keeps or drops it:
ZsRE's rows with an empty ``alt`` are skipped, its ``loc`` must hold ``nq question:``) and turns every item
into an :class:`~easyedit_split.editing.requests.EditRequest`:

* ZsRE: ``prompt``/``target_new``/``ground_truth``/``rephrase_prompt``/``locality_*`` as EasyEdit's class
  reads them; ``subject`` from the raw record (EasyEdit's run scripts read it there too);
* CounterFact: EasyEdit's records as they are (``prompt``, ``subject``, ``target_new``, ``ground_truth``,
  ``rephrase_prompt``, ``locality_prompt``, ``locality_ground_truth``);
* KnowEdit: the class's ``subject``/``prompt``/``target_new``/``ground_truth``; locality from its
  ``locality_rs`` (else ``locality_f``) first entry, as its ``collate_fn`` picks it; the raw record's
  ``rephrase`` when present.

A record without what the preference–utility comparison needs (a ``ground_truth`` to set against
``target_new``, a locality prompt) is an error naming the file, the record's index and the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from easyedit_split.data.formats import DataError
from easyedit_split.editing.requests import EditRequest, _request_from_record

__all__ = ["DATA_TYPES", "read_easyedit_dataset"]


def _first(value: Any) -> Any:
    while isinstance(value, (list, tuple)):
        if not value:
            return None
        value = value[0]
    return value


def _zsre(item: Mapping[str, Any], raw: Mapping[str, Any]) -> dict[str, Any]:
    return {"case_id": item.get("case_id"), "subject": raw.get("subject"), "prompt": item.get("prompt"),
            "target_new": item.get("target_new"), "ground_truth": item.get("ground_truth"),
            "rephrase_prompt": item.get("rephrase_prompt"), "locality_prompt": item.get("locality_prompt"),
            "locality_ground_truth": item.get("locality_ground_truth")}


def _counterfact(item: Mapping[str, Any], raw: Mapping[str, Any]) -> dict[str, Any]:
    return dict(item)


def _knowedit(item: Mapping[str, Any], raw: Mapping[str, Any]) -> dict[str, Any]:
    loc = item.get("locality_rs") or item.get("locality_f") or [{}]
    first = loc[0] if isinstance(loc, list) and loc and isinstance(loc[0], Mapping) else {}
    return {"subject": item.get("subject"), "prompt": item.get("prompt"), "target_new": _first(item.get("target_new")),
            "ground_truth": _first(item.get("ground_truth")), "rephrase_prompt": raw.get("rephrase"),
            "locality_prompt": _first(first.get("prompt")), "locality_ground_truth": _first(first.get("ground_truth"))}


#: data type → (EasyEdit's dataset class name in ``easyeditor``, item → request record)
DATA_TYPES: dict[str, tuple[str, Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]]] = {
    "zsre": ("ZsreDataset", _zsre),
    "counterfact": ("CounterFactDataset", _counterfact),
    "knowedit": ("KnowEditDataset", _knowedit),
}


def read_easyedit_dataset(data_type: str, path: str | os.PathLike, *, size: int | None = None,
                          easyedit_path: str | os.PathLike | None = None) -> list[EditRequest]:
    """The requests of an EasyEdit benchmark file (see the module doc)."""
    from easyedit_split.editing.easyeditor_import import import_easyeditor

    kind = str(data_type).lower()
    if kind not in DATA_TYPES:
        raise DataError(f"--data_type {data_type!r} is not one of {', '.join(DATA_TYPES)}")
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{kind} data file not found: {p}")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{p}: not a JSON file ({exc})") from None
    if not isinstance(raw, list):
        raise DataError(f"{p}: EasyEdit's {kind} files are a JSON list of records, got {type(raw).__name__}")
    class_name, convert = DATA_TYPES[kind]
    dataset_class = getattr(import_easyeditor(easyedit_path), class_name)
    try:
        dataset = dataset_class(str(p), size=size)
    except (KeyError, AssertionError, TypeError) as exc:
        raise DataError(f"{p}: EasyEdit's {class_name} cannot read it ({type(exc).__name__}: {exc})") from None
    items = list(dataset._data if hasattr(dataset, "_data") else dataset.data)
    out: list[EditRequest] = []
    for n, item in enumerate(items):
        index = int(item.get("case_id", n)) if kind == "zsre" else n
        record = convert(item, raw[index] if index < len(raw) else {})
        record.setdefault("case_id", index)
        if record.get("case_id") is None:
            record["case_id"] = index
        if not record.get("rephrase_prompt"):
            record.pop("rephrase_prompt", None)
        out.append(_request_from_record(record, f"{p}: record {index + 1}", n))
    if not out:
        raise DataError(f"{p}: EasyEdit's {class_name} kept no records")
    return out
