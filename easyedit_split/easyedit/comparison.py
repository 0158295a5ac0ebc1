"""The preference–utility comparison of a vectors directory written by EasyEdit's ``run_SPILT.py``.

``run_SPILT.py`` writes ``vectors/<model>/<method>/<dataset>/<method>_<form>/layer_{L}.pt`` (CAA:
``caa_vector/``) and its generation log ``train.log`` in the same folder. :func:`find_vector_runs`
finds these folders and says which implementation produced each one, from the artefacts themselves:
a folder holding the plugin's ``layer_{L}.safetensors`` (format ``easyedit-split/updates``) was
trained by the plugin; one holding only EasyEdit's ``.pt`` by EasyEdit's own code. The registration
line the plugin logs into ``train.log`` is quoted as evidence. :func:`compare_vector_runs` evaluates
every folder's ``layer_*.pt`` (what EasyEdit's appliers read) with
:func:`easyedit_split.evaluation.api.evaluate_preference_utility` on the same pairs, multipliers and
prompt rendering, and adds the provenance table to the report.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from easyedit_split.base.atomic_io import atomic_write_json, atomic_write_report

logger = logging.getLogger(__name__)

__all__ = ["VectorRun", "compare_vector_runs", "find_vector_runs", "run_prompt_settings"]

_REGISTERED = re.compile(r"easyedit-split registered into \S+: .*")
#: why the plugin serves these names (see :data:`easyedit_split.easyedit.registry.TAKE_OVER`)
_TAKE_OVER_REASON = ("EasyEdit's own {alg} cannot run on transformers 5 (its steer/vector_generators/{alg}/utils.py "
                     "treats apply_chat_template(tokenize=True) as a list: TypeError: 'BatchEncoding' object is not "
                     "reversible); the plugin is registered under {alg!r} and trained it")


@dataclass
class VectorRun:
    """One ``<method>/<dataset>/<leaf>`` folder of a run_SPILT.py vectors directory."""

    name: str  # row name in the report: "<method>" (or "<method>/<leaf>" when a method has several)
    method: str
    dataset: str
    folder: Path
    layers: list[int]
    implementation: str  # "easyedit-split" | "EasyEdit"
    detail: str
    registration: str | None  # the plugin's registration line from train.log, if any

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["folder"] = str(self.folder)
        return d


def _plugin_metadata(folder: Path) -> dict[str, Any] | None:
    from easyedit_split.core.serialization import FORMAT_NAME, read_metadata

    for path in sorted(folder.glob("layer_*.safetensors")):
        meta = read_metadata(path)  # an unreadable file is an UpdateFileError naming it
        if meta.get("format") == FORMAT_NAME:
            return meta
    return None


def _meta_value(meta: Mapping[str, str], key: str) -> str:
    import json

    raw = meta.get(key, "?")
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return str(raw)
    return value if isinstance(value, str) else str(raw)


def _registration_line(folder: Path) -> str | None:
    log = folder / "train.log"
    if not log.is_file():
        return None
    found = _REGISTERED.findall(log.read_text(encoding="utf-8", errors="replace"))
    return found[-1] if found else None


def _layers(folder: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in folder.glob("layer_*.pt") if (m := re.fullmatch(r"layer_(\d+)\.pt", p.name)))


def find_vector_runs(vectors_dir: str | os.PathLike) -> list[VectorRun]:
    """Every ``<method>/<dataset>/<leaf>/`` under ``vectors_dir`` holding ``layer_*.pt`` files."""
    from easyedit_split.easyedit.registry import TAKE_OVER

    root = Path(vectors_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"vectors directory {root} does not exist")
    folders = sorted({p.parent for p in root.glob("*/*/*/layer_*.pt")})
    if not folders:
        raise FileNotFoundError(f"{root} holds no <method>/<dataset>/<leaf>/layer_*.pt (the layout run_SPILT.py writes)")
    per_method: dict[str, int] = {}
    for f in folders:
        per_method[f.parts[-3]] = per_method.get(f.parts[-3], 0) + 1
    runs = []
    for folder in folders:
        method, dataset, leaf = folder.parts[-3:]
        meta = _plugin_metadata(folder)
        registration = _registration_line(folder)
        if meta is not None:
            implementation = "easyedit-split"
            detail = f"easyedit-split {_meta_value(meta, 'library_version')}: its {_meta_value(meta, 'method')} trainer"
            if method in TAKE_OVER:
                detail += "; " + _TAKE_OVER_REASON.format(alg=method)
        else:
            implementation = "EasyEdit"
            detail = f"EasyEdit's own {method} generator (steer/vector_generators/{method}), run as is"
        name = method if per_method[method] == 1 else f"{method}/{leaf}"
        runs.append(VectorRun(name, method, dataset, folder, _layers(folder), implementation, detail, registration))
    return runs


def run_prompt_settings(run_folder: str | os.PathLike) -> dict[str, Any]:
    """``chat_template`` / ``system_prompt`` (and ``prompt_rule: easyedit``) of a run folder's top-level spilt_experiment config (empty if none)."""
    from easyedit_split.base.hparams_io import read_yaml_mapping

    path = Path(run_folder) / "hparams/Steer/experiment_hparams/spilt_experiment/config.yaml"
    if not path.is_file():
        return {}
    cfg = read_yaml_mapping(path, what="run folder config")
    out: dict[str, Any] = {}
    if "use_chat_template" in cfg:
        out["chat_template"] = bool(cfg["use_chat_template"])
    if "system_prompt" in cfg:
        out["system_prompt"] = cfg["system_prompt"]
    out["prompt_rule"] = "easyedit"  # EasyEdit generated with its own rule; score on the same prompts
    return out


def _provenance_markdown(runs: Sequence[VectorRun]) -> str:
    lines = ["## Which implementation produced each row", "",
             "| row | folder | layers | implementation | how |", "|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r.name} | `{r.method}/{r.dataset}/{r.folder.name}` | {', '.join(map(str, r.layers))} | "
                     f"{r.implementation} | {r.detail} |")
    registrations = sorted({r.registration for r in runs if r.registration})
    if registrations:
        lines += ["", "Registration logged in the runs' `train.log`:", ""]
        lines += [f"    {line}" for line in registrations]
    lines += ["", ("Every row is evaluated from its folder's `layer_*.pt` files (what EasyEdit's appliers read; a "
                   "vector is added to the layer's output at every position, scaled by m) on the same pairs, "
                   "multipliers and prompt rendering."), ""]
    return "\n".join(lines)


def compare_vector_runs(vectors_dir: str | os.PathLike, model: Any, tokenizer: Any, pairs: Sequence,
                        multipliers: Sequence[float], *, output_dir: str | os.PathLike,
                        train_pairs: Sequence | None = None, encode_kwargs: Mapping[str, Any] | None = None,
                        title: str | None = None, **evaluate_kwargs: Any):
    """Preference–utility report of every run in ``vectors_dir``; returns ``(EvaluationResult, runs)``.

    Writes the evaluator's tables, plots, ``results.json`` and ``report.md`` into ``output_dir``, with
    the provenance table (:func:`find_vector_runs`) added to ``report.md`` and written as
    ``provenance.json``.
    """
    from easyedit_split.evaluation.api import evaluate_preference_utility

    runs = find_vector_runs(vectors_dir)
    specs = {r.name: str(r.folder) for r in runs}
    result = evaluate_preference_utility(model, tokenizer, specs, pairs, multipliers, train_pairs=train_pairs,
                                         output_dir=output_dir, encode_kwargs=dict(encode_kwargs or {}),
                                         title=title or f"Preference–utility comparison: {Path(vectors_dir)}",
                                         **evaluate_kwargs)
    out = Path(output_dir)
    report = out / "report.md"
    text = report.read_text(encoding="utf-8")
    head, sep, rest = text.partition("\n\n")
    atomic_write_report(report, head + sep + _provenance_markdown(runs) + "\n" + rest)
    atomic_write_json(out / "provenance.json", {"vectors_dir": str(vectors_dir), "runs": [r.to_dict() for r in runs]})
    result.files["provenance"] = str(out / "provenance.json")
    return result, runs
