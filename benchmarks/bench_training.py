"""Training throughput (pairs/s) and peak memory on SmolLM2-135M-Instruct, psychopathy, one thread.

Configurations (each in its own subprocess, so peak RSS is its own):

* ``lower_bound`` — one forward + backward of the frozen full model over the positive and the
  negative sequences of a minibatch (``2B`` rows), with a trainable vector at the layer and
  nothing else: no prefix cache, no single-token sharing, no optimizer, no objective;
* ``<form>`` — the real trainer (SPLIT objective, both directions, AdamW) with the prefix cache
  and single-token sharing, for vector / LoRA / local weight;
* ``vector_nocache`` — the trainer without prefix cache and single-token sharing (the speed-up of
  those two at this layer is ``vector / vector_nocache``).

A trainer pair counts once per minibatch step although it is scored in both directions (rows
``(pair, +m)`` and ``(pair, −m)``), as EasyEdit's 0.34 pairs/s reference does.

    python benchmarks/bench_training.py --layer 15 --pairs 32
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("lower_bound", "vector", "lora", "local_weight", "vector_nocache")


def _child(name: str, layer: int, n_pairs: int, batch: int) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(1)
    from easyedit_split.core.apply import apply_updates
    from easyedit_split.core.models import load_model
    from easyedit_split.core.sites import Site, resolve_site
    from easyedit_split.core.updates import VectorUpdate
    from easyedit_split.data import collate_pairs, load_builtin
    from easyedit_split.data.logprobs import answer_nll
    from easyedit_split.training.hparams import SplitHyperParams
    from easyedit_split.training.trainer import Trainer, encode_for

    model, tok = load_model()
    pairs = load_builtin("psychopathy")[:n_pairs]
    hp_kw = {"alg_name": "split", "layers": [layer], "n_epochs": 1, "batch_size": batch, "gradient_accumulation_steps": 1,
                 "lr": 0.1, "neg_loss_weight": 0.5, "margin_penalty_weight": 4.0, "steering_factors": [0.5, 1.0, 1.5],
                 "system_prompt": "", "seed": 0}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if name == "lower_bound":
        hp = SplitHyperParams.from_dict(hp_kw)
        enc = encode_for(hp, pairs, tok)
        site = Site(layer, "residual")
        v = VectorUpdate(site, resolve_site(model, site).d_out)
        v.vector.requires_grad_(True)
        batches = [collate_pairs(enc[i:i + batch], tok.pad_token_id) for i in range(0, len(enc), batch)]
        t = time.perf_counter()
        for b in batches:
            with apply_updates(model, [v], 1.0):
                logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
            s, _ = answer_nll(logits, b)
            s.sum().backward()
        seconds = time.perf_counter() - t
    else:
        form = "vector" if name == "vector_nocache" else name
        extra = {"use_prefix_cache": False, "single_token_sharing": False} if name == "vector_nocache" else {}
        hp = SplitHyperParams.from_dict({**hp_kw, "intervention_method": form, **extra})
        res = Trainer(model, tok, hp).train(pairs, progress=False)
        seconds = res.seconds  # includes preparing the minibatches (prefix cache), which is part of the cost
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"config": name, "pairs": len(pairs), "seconds": seconds, "pairs_per_s": len(pairs) / seconds,
            "peak_rss_mib": rss / 1024, "rss_before_mib": rss0 / 1024}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.layer, args.pairs, args.batch)))
        return 0
    rows = []
    for name in args.configs.split(","):
        out = subprocess.run([sys.executable, __file__, "--child", name, "--layer", str(args.layer), "--pairs",
                              str(args.pairs), "--batch", str(args.batch)], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{name:>15}: {row['pairs_per_s']:.3f} pairs/s ({row['seconds']:.1f} s for {row['pairs']} pairs), "
              f"peak RSS {row['peak_rss_mib']:.0f} MiB", flush=True)
    by = {r["config"]: r for r in rows}
    if "lower_bound" in by:
        lb = by["lower_bound"]["pairs_per_s"]
        for r in rows:
            if r["config"] != "lower_bound":
                print(f"{r['config']:>15}: {r['pairs_per_s'] / lb:.2f}x the lower bound, "
                      f"{r['pairs_per_s'] / 0.34:.1f}x EasyEdit's 0.34 pairs/s")
    if "vector" in by and "vector_nocache" in by:
        print(f"prefix cache + single-token sharing at layer {args.layer}: "
              f"{by['vector']['pairs_per_s'] / by['vector_nocache']['pairs_per_s']:.2f}x")
    if args.json:
        sys.path.insert(0, str(ROOT))
        from easyedit_split.base.atomic_io import atomic_write_json

        atomic_write_json(args.json, {"layer": args.layer, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
