"""``easyedit-split generate``: steered completions of prompts, batched, in hook or merged mode."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from easyedit_split.base.checks import (
    nonnegative_int_arg,
    positive_float_arg,
    positive_int_arg,
    probability_arg,
    seed_arg,
    set_threads,
)
from easyedit_split.cli.common import add_deprecated_alias, add_device_map_arguments, add_model_arguments
from easyedit_split.errors import InputError

logger = logging.getLogger(__name__)

HELP = "generate steered completions (batched; hook or merged mode; one or many multipliers)"

_PROMPT_FIELDS = ("prompt", "instruction", "question", "input")


def _is_pt(args: argparse.Namespace) -> bool:
    from easyedit_split.adapters.artefacts import is_pt_spec

    return is_pt_spec(args.update)


#: flags that apply only in some cases (see ``cli``)
FLAG_RULES = (
    ("layer", _is_pt, "to an EasyEdit .pt update file (whose name does not give the layer)"),
    ("multipliers", lambda a: a.update is not None, "with --update (unsteered generation has no multiplier)"),
    ("mode", lambda a: a.update is not None, "with --update"),
    ("positions", lambda a: a.update is not None and a.mode == "hook",
     "with --update in --mode hook (merged mode steers every position)"),
    ("temperature", lambda a: a.do_sample, "with --do-sample (greedy decoding has no temperature)"),
    ("top_p", lambda a: a.do_sample, "with --do-sample"),
    ("top_k", lambda a: a.do_sample, "with --do-sample"),
    ("seed", lambda a: a.do_sample, "with --do-sample (greedy decoding is deterministic)"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--update",
        action="append",
        default=None,
        metavar="[NAME=]FILE",
        help="update file or folder (.safetensors, EasyEdit .pt, peft folder, edited checkpoint); repeat with "
        "NAME=FILE for several: every prompt is generated under each, in shared batches (hook mode), unless a "
        "prompts-file record names its 'update'. Omit for unsteered generation",
    )
    p.add_argument(
        "--layer", type=nonnegative_int_arg, default=None, help="layer for an EasyEdit .pt file not named layer_N.pt"
    )
    p.add_argument(
        "--multipliers",
        nargs="+",
        default=["1"],
        help="multipliers: values, a comma list or start:stop:num; every prompt is generated at every "
        "multiplier, in one batched run",
    )
    add_deprecated_alias(p, "--multiplier", "--multipliers", "multipliers", nargs="+")
    p.add_argument("--mode", choices=("hook", "merged"), default="hook",
                   help="hook: the update added by forward hooks; merged: folded into the weights for the run")
    p.add_argument(
        "--positions",
        choices=("all", "prompt", "generated"),
        default="all",
        help="hook mode: which positions to steer",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append", metavar="TEXT", help="a prompt (repeat for several)")
    src.add_argument(
        "--prompts-file",
        metavar="F",
        help=f"one prompt per line (.txt), or .jsonl/.json records with a {'/'.join(_PROMPT_FIELDS)} field and "
        "optionally 'update' (a NAME of --update, or null: unsteered) and 'multiplier' (that record is generated "
        "with those only)",
    )
    add_model_arguments(p)
    add_device_map_arguments(p)
    p.add_argument("--max-new-tokens", type=positive_int_arg, default=64, help="tokens generated per completion")
    p.add_argument("--batch-size", type=positive_int_arg, default=16, help="(prompt, multiplier) rows per batch")
    p.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=positive_float_arg, default=1.0, help="sampling temperature (> 0; --do-sample)")
    p.add_argument("--top-p", type=probability_arg, default=1.0, help="nucleus sampling mass, in (0, 1] (--do-sample)")
    p.add_argument("--top-k", type=nonnegative_int_arg, default=0, help="sample among the k likeliest tokens; 0: all")
    p.add_argument("--seed", type=seed_arg, default=None, help="makes sampling reproducible")
    p.add_argument("--system-prompt", default=None, help="system message of the chat template (default: the model's)")
    p.add_argument(
        "--no-chat-template", action="store_true", help="feed prompts raw, without the chat template"
    )
    p.add_argument(
        "--metrics",
        action="store_true",
        help="add perplexity under the unsteered model and distinct-n / repetition per multiplier",
    )
    p.add_argument("--threads", type=positive_int_arg, default=None, help="torch CPU threads")
    p.add_argument("--output", default=None, metavar="F.jsonl", help="write one JSON record per completion")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")


@dataclass(frozen=True)
class PromptRecord:
    """A prompt, and the update (by name; ``""`` = unsteered) and multiplier its record asks for, if any."""

    prompt: str
    update: str | None = None
    multiplier: float | None = None


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a .txt (one per non-empty line), .jsonl or .json file."""
    return [r.prompt for r in read_prompt_records(path)]


def read_prompt_records(path: str | Path) -> list[PromptRecord]:
    """:func:`read_prompts` with each record's optional ``update`` and ``multiplier`` fields."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"prompts file {p} does not exist")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text (byte {exc.start}: {exc.reason}); re-save it as UTF-8") from None
    suffix = p.suffix.lower()
    if suffix not in (".jsonl", ".json"):
        prompts = [PromptRecord(line.strip()) for line in text.splitlines() if line.strip()]
    else:
        if suffix == ".json":
            try:
                records = json.loads(text)
            except ValueError as exc:
                raise InputError(f"{p}: not valid JSON ({exc})") from None
            if not isinstance(records, list):
                raise InputError(f"{p}: expected a JSON list of records or strings")
            numbered = list(enumerate(records, start=1))
        else:
            numbered = []
            for lineno, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        numbered.append((lineno, json.loads(line)))
                    except ValueError as exc:
                        raise InputError(f"{p}:{lineno}: not valid JSON ({exc})") from None
        prompts = []
        for where, rec in numbered:
            if isinstance(rec, str):
                prompts.append(PromptRecord(rec))
                continue
            field = next(
                (f for f in _PROMPT_FIELDS if isinstance(rec, dict) and isinstance(rec.get(f), str)), None
            )
            if field is None:
                raise InputError(f"{p}:{where}: record has no text field ({', '.join(_PROMPT_FIELDS)})")
            update = rec.get("update", None) if "update" in rec else None
            if "update" in rec and update is None:
                update = ""  # null: unsteered
            if update is not None and not isinstance(update, str):
                raise InputError(f"{p}:{where}: field 'update' must be the NAME of an --update (or null), got {update!r}")
            m = rec.get("multiplier")
            if m is not None and (isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m)):
                raise InputError(f"{p}:{where}: field 'multiplier' must be a finite number, got {m!r}")
            prompts.append(PromptRecord(rec[field], update, None if m is None else float(m)))
    if not prompts:
        raise InputError(f"prompts file {p} has no prompts")
    return prompts


@dataclass(frozen=True)
class PlannedRow:
    prompt_index: int
    update: str | None  # NAME of an --update ("" for a single unnamed one); None: unsteered
    multiplier: float


def parse_update_specs(values: list[str]) -> dict[str, str]:
    """``--update`` values: one plain FILE (name ``""``), or ``NAME=FILE`` each (names unique)."""
    if not values:
        return {}
    if len(values) == 1 and "=" not in values[0]:
        return {"": values[0]}
    out: dict[str, str] = {}
    for v in values:
        name, sep, spec = v.partition("=")
        if not sep or not name.strip() or not spec.strip():
            raise InputError(f"--update {v!r}: with several updates write NAME=FILE for each")
        if name.strip() in out:
            raise InputError(f"--update: the name {name.strip()!r} is used twice")
        out[name.strip()] = spec.strip()
    return out


def plan_rows(records: list[PromptRecord], names: list[str], multipliers: list[float]) -> list[PlannedRow]:
    """The completions to make. Without per-record fields: every update × multiplier × prompt (in that
    order). A record naming its ``update`` / ``multiplier`` gets only those (each missing field: every
    --update / every --multiplier), in file order."""
    default_names: list[str | None] = list(names) or [None]
    if not any(r.update is not None or r.multiplier is not None for r in records):
        return [PlannedRow(i, n, m) for n in default_names for m in multipliers for i in range(len(records))]
    rows = []
    for i, r in enumerate(records):
        if r.update and r.update not in names:
            raise InputError(f"prompt {i + 1} names update {r.update!r}, but --update gives "
                             f"{', '.join(repr(n) for n in names if n) or 'no named update'}")
        chosen = default_names if r.update is None else [r.update or None]  # "" (null): unsteered
        for n in chosen:
            for m in ([r.multiplier] if r.multiplier is not None else multipliers):
                rows.append(PlannedRow(i, n, m if n is not None else 0.0))
    return rows


def _run_key(args: argparse.Namespace, prompts: list[str], mults: list, updates: list, model: Any) -> str:
    """What the completions depend on, by content: the updates' tensors and sites (not the path they were read
    from: a file replaced under the same name is another run), the model, the prompts and the settings;
    partial results of another run are not reused."""
    from easyedit_split.core.serialization import model_signature, tensors_checksum

    settings = {k: getattr(args, k) for k in ("mode", "positions", "model", "dtype", "max_new_tokens",
                                              "do_sample", "temperature", "top_p", "top_k", "seed", "system_prompt",
                                              "no_chat_template", "batch_size")}
    content = [[u.form_key, str(u.site), tensors_checksum({n: p.detach() for n, p in u.named_parameters()})]
               for u in updates]
    blob = json.dumps({"settings": settings, "prompts": prompts, "multipliers": mults, "updates": content,
                       "model": model_signature(model)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run(args: argparse.Namespace) -> int:
    from easyedit_split.adapters.artefacts import check_spec, load_artefact
    from easyedit_split.base.atomic_io import (
        JsonlAppender,
        check_writable,
        output_lock,
        refuse_existing,
        refuse_replacing_inputs,
    )
    from easyedit_split.base.multipliers import parse_multipliers
    from easyedit_split.core.generation import Generation, generate
    from easyedit_split.core.models import load_model

    set_threads(args.threads)
    multipliers = parse_multipliers(args.multipliers, what="--multipliers")
    records = [PromptRecord(p) for p in args.prompt] if args.prompt else read_prompt_records(args.prompts_file)
    prompts = [r.prompt for r in records]
    specs = parse_update_specs(args.update or [])
    for name, spec in specs.items():
        check_spec(spec, what=f"--update {name + '=' if name else ''}{spec}")
    if args.output:  # before any work: an unwritable --output must not cost the completions
        check_writable(args.output, what="--output", is_dir=False)
        refuse_replacing_inputs(args.output, {"the --prompts-file": args.prompts_file, "the --update": args.update})
        refuse_existing([args.output], overwrite=args.overwrite)
    out_file = Path(args.output) if args.output else None
    lock = output_lock(out_file.parent, what="--output", name=f".{out_file.name}.lock") if out_file else None
    with lock or contextlib.nullcontext():
        model, tok = load_model(args.model, dtype=args.dtype, device=args.device, device_map=args.device_map,
                                max_memory=args.max_memory)
        groups = {name: load_artefact(spec, model, layer=args.layer).updates for name, spec in specs.items()}
        if not groups and multipliers != [1.0]:
            logger.warning("no --update given: multipliers have no effect")
        rows = plan_rows(records, list(groups), multipliers if groups else [0.0])
        names = list(groups)
        # completions are appended to <output>.partial as batches finish; a rerun reuses them
        partial = JsonlAppender(f"{args.output}.partial") if args.output else None
        key = _run_key(args, prompts, [(r.prompt_index, r.update, r.multiplier) for r in rows],
                       [u for name in names for u in groups[name]], model)
        done: dict[int, Generation] = {}
        if partial is not None:
            for rec in partial.read():
                if rec.get("run") == key and isinstance(rec.get("row"), int) and 0 <= rec["row"] < len(rows):
                    done[rec["row"]] = Generation(**{k: rec[k] for k in Generation.__dataclass_fields__ if k in rec})
            if done:
                logger.warning("resuming: %d of %d completions found in %s", len(done), len(rows), partial.path)
        todo = [i for i in range(len(rows)) if i not in done]

        def save_batch(batch: list) -> None:
            if partial is not None:
                partial.append([{"run": key, "row": todo[g.index], **g.to_dict()} for g in batch])

        several = len(groups) > 1 or (bool(groups) and any(r.update is None for r in rows))
        new = generate(
            model,
            tok,
            [prompts[rows[i].prompt_index] for i in todo],
            [groups[n] for n in names] if several else (groups[names[0]] if names else []),
            [rows[i].multiplier for i in todo],
            update_index=[names.index(rows[i].update) if rows[i].update is not None else -1 for i in todo]
            if several else None,
            mode=args.mode,
            positions=args.positions,
            chat_template=False if args.no_chat_template else None,
            system_prompt=args.system_prompt,
            max_new_tokens=args.max_new_tokens,
            do_sample=args.do_sample,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            seed=args.seed,
            batch_size=args.batch_size,
            on_batch=save_batch,
        ) if todo else []
        for i, g in zip(todo, new):
            done[i] = g
        gens = [done[i] for i in range(len(rows))]
        for i, g in enumerate(gens):
            g.index = i
        return _finish(args, model, tok, prompts, rows, gens, partial)


def _finish(args, model, tok, prompts, rows, gens, partial) -> int:
    from easyedit_split.base.atomic_io import atomic_write_text, dumps_json

    named = any(r.update for r in rows) or (any(r.update is None for r in rows) and any(r.update == "" for r in rows))
    records = [{"id": (f"{'none' if r.update is None else r.update or 'update'}-" if named else "")
                + f"m{g.multiplier:g}-p{r.prompt_index}",
                **({"update": r.update} if named else {}), **g.to_dict()} for r, g in zip(rows, gens)]
    mults = list(dict.fromkeys((r.update, r.multiplier) for r in rows))
    summary: dict[str, Any] = {}
    if args.metrics:
        from easyedit_split.data.encoding import pad_id_of
        from easyedit_split.metrics.diversity import diversity_summary
        from easyedit_split.metrics.fluency import perplexity

        ppl = perplexity(model, gens, pad_token_id=pad_id_of(tok), batch_size=args.batch_size)
        for rec, value in zip(records, ppl.per_text):
            rec["perplexity"] = value
        for name, m in mults:
            sel = [g for r, g in zip(rows, gens) if (r.update, r.multiplier) == (name, m)]
            vals = [v for r, v in zip(rows, ppl.per_text) if (r.update, r.multiplier) == (name, m) and not math.isnan(v)]
            summary[(f"{'none' if name is None else name or 'update'}@" if named else "") + f"{m:g}"] = {
                "perplexity_mean": sum(vals) / len(vals) if vals else None,
                **diversity_summary([g.token_ids for g in sel]),
            }
    if args.output:
        atomic_write_text(args.output, "".join(dumps_json(r) + "\n" for r in records))
        if partial is not None:
            partial.remove()
    out = sys.stdout
    for rec in records:
        extra = f"  [ppl {rec['perplexity']:.1f}]" if "perplexity" in rec else ""
        which = f"{'unsteered' if rec['update'] is None else rec['update'] or 'update'} " if named else ""
        out.write(f"--- {which}m={rec['multiplier']:g} | {rec['prompt']}{extra}\n{rec['text']}\n")
    for m, s in summary.items():
        out.write(f"m={m}: " + ", ".join(f"{k}={v:.3f}" for k, v in s.items() if isinstance(v, float)) + "\n")
    if args.output:
        out.write(f"wrote {len(records)} completions to {args.output}\n")
    return 0
