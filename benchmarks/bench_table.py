"""Write the aggregate tables of a benchmark's ``results.json`` into a markdown file, between markers.

    python benchmarks/bench_table.py runs/bench-quick/results.json --into docs/bench.md

replaces the text between ``<!-- bench-table:start -->`` and ``<!-- bench-table:end -->`` of
``--into`` (or prints the tables without ``--into``), so the documented table is generated, not typed.
The repository's own pages get these tables from ``benchmarks/render_docs.py`` (blocks ``bench-quick`` and
``bench-quick-forms``, from ``notes/bench_quick*/results.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from easyedit_split.base.atomic_io import atomic_write_text
from easyedit_split.bench.report import aggregate_table, paired_table

START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def tables(results: dict) -> str:
    s = results["settings"]
    roles = ", ".join(sorted({s["roles"][c] for c in results["concepts"]}))
    head = (f"{len(results['concepts'])} {roles} "
            f"concepts ({s['concepts_source']}); {s['sizes']['train']} / {s['sizes']['val']} / {s['sizes']['test']} "
            f"training / validation / test pairs per concept; grid {s['grid']}; model {s['model']}; "
            f"the cells' own times sum to {results['seconds']['cells_sum'] / 60:.1f} min"
            + (f"; missing concepts: {', '.join(results['missing_concepts'])}" if results["missing_concepts"] else "")
            + ".")
    return "\n".join([head, "", "Per method (median over concepts [95 % CI]; accuracy %, odds in nats):", "",
                      *aggregate_table(results), "", "Against SPLIT (mean paired difference [95 % CI]; wins/ties/losses):",
                      "", *paired_table(results)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results")
    ap.add_argument("--into", default=None)
    args = ap.parse_args(argv)
    text = tables(json.loads(Path(args.results).read_text(encoding="utf-8")))
    if args.into is None:
        print(text)
        return 0
    doc = Path(args.into).read_text(encoding="utf-8")
    if START not in doc or END not in doc:
        raise SystemExit(f"{args.into}: no {START} ... {END} block to replace")
    before, rest = doc.split(START, 1)
    _, after = rest.split(END, 1)
    atomic_write_text(args.into, f"{before}{START}\n{text}\n{END}{after}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
