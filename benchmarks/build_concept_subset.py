"""Record the tuning/report split of the persona concepts and build the embedded subset (run once).

Reads a folder of persona ``<concept>.jsonl`` files (the 120 sets of Anthropic's evals, CC BY 4.0),
splits the concepts into tuning and report concepts by ``easyedit_split.bench.concepts.SPLIT_RULE``
(seed 0), draws the embedded subset by :data:`EMBED_RULE`, and writes, into
``easyedit_split/resources/data/persona/``:

* ``<concept>.jsonl.gz`` — unchanged copies of the drawn concepts' files, gzipped (mtime 0, so the bytes
  depend only on the content);
* ``concept_split.json`` — both splits (all concepts and the embedded subset), the seed, the rules and
  the SHA-256 of every source file.

    python benchmarks/build_concept_subset.py --source /work/shared/data/anthropic-evals/persona
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from easyedit_split.base.atomic_io import atomic_write_bytes, atomic_write_json
from easyedit_split.bench.concepts import SPLIT_FILE, concept_files, split_concepts

N_REPORT, N_TUNING = 8, 4
EMBED_RULE = (f"random.Random(f'bench-embedded/{{seed}}').sample(report, {N_REPORT}) and then .sample(tuning, "
              f"{N_TUNING}) from the same generator, each sorted")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", required=True, help="folder of <concept>.jsonl persona files")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dest", default=str(ROOT / "easyedit_split" / "resources" / "data" / "persona"))
    args = ap.parse_args(argv)
    files = concept_files(args.source)
    roles = split_concepts(files, seed=args.seed)
    rng = random.Random(f"bench-embedded/{args.seed}")
    report = sorted(rng.sample(roles.report, N_REPORT))
    tuning = sorted(rng.sample(roles.tuning, N_TUNING))
    dest = Path(args.dest)
    for name in report + tuning:
        atomic_write_bytes(dest / f"{name}.jsonl.gz", gzip.compress(files[name].read_bytes(), mtime=0))
    record = {
        "source": "Anthropic evals, persona/<concept>.jsonl at commit 84fcc677e52e1902d696c32cd1a6b663e70d3993 "
                  "(CC BY 4.0; see ../README.md)",
        "seed": args.seed, "rule": roles.rule, "tuning_fraction": roles.extra["tuning_fraction"],
        "pinned": roles.extra["pinned"],
        "all": {"tuning": roles.tuning, "report": roles.report},
        "embedded": {"tuning": tuning, "report": report, "rule": EMBED_RULE},
        "sha256": {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()},
    }
    atomic_write_json(dest / SPLIT_FILE, record)
    print(f"{len(files)} concepts: {len(roles.tuning)} tuning, {len(roles.report)} report; embedded "
          f"{len(report)} report + {len(tuning)} tuning -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
