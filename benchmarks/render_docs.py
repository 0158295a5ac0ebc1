"""Render the generated tables of the docs pages from the files that measured them (never typed by hand).

A page marks each generated block::

    <!-- generated: table3 -->
    ... rendered from notes/table3.json ...
    <!-- /generated: table3 -->

    python benchmarks/render_docs.py            # rewrite the blocks of docs/results-psychopathy.md, reproducing.md
    python benchmarks/render_docs.py --check    # exit 1 when a block differs from what its data renders

Blocks and their sources (``RENDERERS``): ``table3`` and ``table3-dial`` from ``notes/table3.json`` (written
by ``benchmarks/table3.py``), ``steps`` from the table of steps of ``benchmarks/reproduce_readme.py``,
``bench-quick`` and ``bench-quick-forms`` from the recorded benchmark runs (``notes/bench_quick*/results.json``,
rendered by ``benchmarks/bench_table.py``), ``bench-search`` from the defaults-search records ``notes/bench_search/<method>_<form>_round<k>.json``
(written by ``benchmarks/search_bench_defaults.py``), ``main-job`` from a main job's ``summary.json``: the recorded run in ``notes/main_job/`` (its
``summary.json`` and ``summary.md``), or ``--main-run DIR`` for another ``easyedit-split run`` output.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = (ROOT / "README.md", ROOT / "docs" / "results-psychopathy.md", ROOT / "docs" / "reproducing.md",
         ROOT / "docs" / "bench.md")
TABLE3_JSON = ROOT / "notes" / "table3.json"
BENCH_SEARCH_DIR = ROOT / "notes" / "bench_search"
MAIN_JOB_DIR = ROOT / "notes" / "main_job"
BENCH_RECORDS = {"bench-quick": ROOT / "notes" / "bench_quick", "bench-quick-forms": ROOT / "notes" / "bench_quick_forms"}

FORM_LABELS = {"vector": "vector", "lora": "LoRA (r = 4, mlp_down)", "local_weight": "local weight (mlp_down)"}
DIAL_LABELS = {"vector": "vector", "lora": "LoRA", "local_weight": "local weight"}
METHOD_LABELS = {"diffmean": "DiffMean", "sft": "SFT", "reps": "RePS", "split": "SPLIT"}
_BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /generated: (?P=name) -->)", re.DOTALL)


def _num(x: float, spec: str) -> str:
    return format(x, spec).replace("-", "−")  # the docs' minus sign


def _pct(x: float) -> str:
    return f"{100 * x:.0f}"


def render_table3(data: Mapping) -> str:
    """Held-out accuracy % / mean UtilOdds at m = 1 per form and method."""
    cells = data["cells"]
    lines = ["| form | unsteered | " + " | ".join(METHOD_LABELS.values()) + " |", "|---|---|---|---|---|---|"]
    for form, label in FORM_LABELS.items():
        base = cells["vector/unsteered"]
        row = [f"{_pct(base['accuracy'])} / {_num(base['util_odds'], '.2f')}"]
        for method in METHOD_LABELS:
            c = cells.get(f"{form}/{method}")
            row.append("–" if c is None else f"{_pct(c['accuracy'])} / {_num(c['util_odds'], '.2f')}")
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def render_table3_dial(data: Mapping) -> str:
    """Held-out accuracy % at every m of the run, per form and trained method."""
    cells = data["cells"]
    methods = [m for m in METHOD_LABELS if m != "diffmean"]
    lines = ["| form | " + " | ".join(METHOD_LABELS[m] for m in methods) + " |", "|---|" + "---|" * len(methods)]
    for form, label in DIAL_LABELS.items():
        row = []
        for method in methods:
            per_m = cells[f"{form}/{method}"]["per_m"]
            row.append(" / ".join(_pct(per_m[k]["accuracy"]) for k in sorted(per_m, key=float)))
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    ms = sorted(cells["vector/split"]["per_m"], key=float)
    return "\n".join(lines) + f"\n\n(m = {' / '.join(ms)}.)\n"


def render_main_job(summary: Mapping) -> str:
    """The headline table of a main job's summary.json (its first form)."""
    rows = summary["table"]
    form = rows[0]["form"]
    lines = ["| method | accuracy | mean PrefOdds | mean UtilOdds | R² PrefOdds fit | R² UtilOdds fit |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if r["form"] != form:
            continue
        name = "unsteered" if r["method"] == "unsteered" else METHOD_LABELS.get(r["method"], r["method"])
        r2 = [("–" if r.get(k) is None else f"{r[k]:.3f}") for k in ("r2_pref", "r2_util")]
        lines.append(f"| {name} (m = {r['m']:g}) | {_pct(r['accuracy'])}% | {_num(r['pref'], '+.2f')} | "
                     f"{_num(r['util'], '+.2f')} | {r2[0]} | {r2[1]} |")
    return "\n".join(lines) + "\n"


def render_bench_search(folder: Path) -> str:
    """Every configuration of every round of the many-concept defaults search: the objective (lower quartile of
    validation accuracy over m ∈ {1, 1.5, 2}, pooled over the tuning concepts), its median and minimum; each
    round's best configuration (by the lower quartile, then the median) in bold."""
    header = ("| method (form) | round | configuration | change to the round's YAML | lower quartile % | median % | "
              "min % | concepts |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    rounds = []  # (method_form, round, file), from <method>_<form>_round<k>.json
    for f in folder.glob("*_round*.json"):
        if not f.name.endswith(".points.json"):
            name, k = f.stem.rsplit("_round", 1)
            rounds.append((name, int(k), f))
    for _, k, f in sorted(rounds):
        record = json.loads(f.read_text(encoding="utf-8"))
        summary = record["summary"]
        best = max(summary, key=lambda k: (summary[k]["q25"], summary[k]["median"]))
        method, form = record["settings"]["method"], record["settings"]["form"]
        label = f"{METHOD_LABELS.get(method, method)} ({form})"
        for name, row in sorted(summary.items(), key=lambda kv: (-kv[1]["q25"], -kv[1]["median"], kv[0])):
            change = ", ".join(f"{k} = {json.dumps(v)}" for k, v in row["point"].items()) or "none"
            cells = [_pct(row["q25"]), _pct(row["median"]), _pct(row["min"])]
            shown = f"**{name}**" if name == best else name
            lines.append(f"| {label} | {k} | {shown} | {change} | " + " | ".join(cells)
                         + f" | {row['n_concepts']} |")
    return "\n".join(lines) + "\n"


def render_bench(record: Path) -> str:
    """The aggregate tables of a recorded ``easyedit-split bench`` run (its ``results.json``)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_table import tables

    return tables(json.loads((record / "results.json").read_text(encoding="utf-8"))) + "\n"


def render_steps() -> str:
    """Every step of benchmarks/reproduce_readme.py with the command that runs it (from its table of steps)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from readme_steps import STEPS

    lines = ["| step | what it regenerates | needs | time (min) |", "|---|---|---|---|"]
    for s in STEPS:
        time_text = f"{'~' if s.estimated else ''}{s.minutes:g}"
        lines.append(f"| `python benchmarks/reproduce_readme.py --only {s.name}` | {s.section} | {s.needs()} | "
                     f"{time_text} |")
    return "\n".join(lines) + "\n"


def renderers(main_run: Path | None) -> dict[str, Callable[[], str]]:
    table3 = lambda: json.loads(TABLE3_JSON.read_text(encoding="utf-8"))
    out: dict[str, Callable[[], str]] = {"table3": lambda: render_table3(table3()),
                                         "table3-dial": lambda: render_table3_dial(table3()),
                                         "steps": render_steps,
                                         "bench-search": lambda: render_bench_search(BENCH_SEARCH_DIR),
                                         **{name: (lambda d=d: render_bench(d)) for name, d in BENCH_RECORDS.items()}}
    if main_run is not None:
        out["main-job"] = lambda: render_main_job(json.loads((main_run / "summary.json").read_text(encoding="utf-8")))
    return out


def render_page(text: str, available: Mapping[str, Callable[[], str]]) -> tuple[str, list[str]]:
    """The page with every block that has data re-rendered, and the names of the blocks that changed."""
    changed: list[str] = []

    def fill(match: re.Match) -> str:
        name = match.group("name")
        if name not in available:
            return match.group(0)
        body = available[name]()
        if body != match.group("body"):
            changed.append(name)
        return match.group(1) + body + match.group(4)

    return _BLOCK.sub(fill, text), changed


def block_names(text: str) -> list[str]:
    return [m.group("name") for m in _BLOCK.finditer(text)]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 when a block is out of date")
    ap.add_argument("--main-run", type=Path, default=MAIN_JOB_DIR,
                    help="a main job's output folder (its summary.json; default: the recorded run, notes/main_job)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    stale = 0
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        new, changed = render_page(text, renderers(args.main_run))
        if args.check:
            for name in changed:
                print(f"{page}: block {name!r} differs from what its data renders", file=sys.stderr)
            stale += len(changed)
            continue
        if changed:
            from easyedit_split.base.atomic_io import atomic_write_text

            atomic_write_text(page, new)
        print(f"{page.relative_to(ROOT)}: re-rendered {', '.join(changed) or 'nothing (up to date)'}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
