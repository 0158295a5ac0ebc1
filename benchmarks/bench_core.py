"""Forward and generate() throughput of SmolLM2-135M under each update form, hook vs merged mode.

Every figure is a ratio to the unsteered model measured in the same run: one torch thread,
repetitions interleaved with the order rotated each time, medians of the process's CPU time (on a
shared machine wall time also counts time the process spent waiting for a core; both are printed).
Targets: merged >= 0.97 of unsteered, hook mode >= 0.90.

    python benchmarks/bench_core.py [--reps 5] [--batch 8] [--seq 64] [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--gen-batch", type=int, default=16)
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    from easyedit_split.apply import apply_updates, merged_updates
    from easyedit_split.models import load_model
    from easyedit_split.sites import Site, resolve_site
    from easyedit_split.updates import LocalWeightUpdate, LoRAUpdate, VectorUpdate

    model, tok = load_model(args.model)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (args.batch, args.seq))
    rs = resolve_site(model, Site(args.layer, "mlp_down"))
    updates = {
        "vector": VectorUpdate(Site(args.layer, "residual"), rs.d_out, vector=torch.randn(rs.d_out) * 0.01),
        "lora": LoRAUpdate(rs.site, rs.d_in, rs.d_out, rank=4, B=torch.randn(rs.d_out, 4) * 0.01),
        "local_weight": LocalWeightUpdate(rs.site, rs.d_in, rs.d_out, weight=torch.randn(rs.d_out, rs.d_in) * 1e-3),
    }
    configs: dict[str, callable] = {"unsteered": contextlib.nullcontext}
    for form, u in updates.items():
        configs[f"hook/{form}"] = (lambda u=u: apply_updates(model, u, 1.0))
        configs[f"merged/{form}"] = (lambda u=u: merged_updates(model, u, 1.0))

    prompts = [f"Tell me something about topic number {i}." for i in range(args.gen_batch)]
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True)

    def timed(fn) -> tuple[float, float]:
        w, c = time.perf_counter(), time.process_time()
        with torch.no_grad():
            fn()
        return time.process_time() - c, time.perf_counter() - w

    def forward_once():
        return timed(lambda: model(input_ids=ids, use_cache=False))

    def generate_once():
        return timed(lambda: model.generate(**enc, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                            do_sample=False, pad_token_id=tok.pad_token_id))

    names = list(configs)
    results: dict[str, dict[str, list[tuple[float, float]]]] = {k: {"forward": [], "generate": []} for k in configs}
    for name, ctx in configs.items():  # warm-up
        with ctx():
            forward_once()
    for rep in range(args.reps):
        order = names[rep % len(names):] + names[:rep % len(names)]  # rotate so no config is always first
        for name in order:
            with configs[name]():
                results[name]["forward"].append(forward_once())
                if rep < max(1, args.reps // 2 + 1):
                    results[name]["generate"].append(generate_once())

    fwd_tokens = args.batch * args.seq
    gen_tokens = args.gen_batch * args.new_tokens
    def med(xs, i):
        return statistics.median(x[i] for x in xs)

    base_f = med(results["unsteered"]["forward"], 0)
    base_g = med(results["unsteered"]["generate"], 0)
    print(f"machine: {platform.processor() or platform.machine()}, torch threads: {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"model: {type(model).__name__} {model.config._name_or_path}; site layer {args.layer}; "
          f"forward {args.batch}x{args.seq} tokens, generate {args.gen_batch} prompts x {args.new_tokens} new tokens")
    print("tok/s per CPU second (ratio to unsteered) and per wall second")
    print(f"{'config':<20} {'fwd tok/s':>10} {'ratio':>7} {'wall':>8} {'gen tok/s':>10} {'ratio':>7} {'wall':>8}")
    for name, r in results.items():
        f, g = med(r["forward"], 0), med(r["generate"], 0)
        fw, gw = med(r["forward"], 1), med(r["generate"], 1)
        print(f"{name:<20} {fwd_tokens / f:>10.1f} {base_f / f:>7.3f} {fwd_tokens / fw:>8.1f} "
              f"{gen_tokens / g:>10.1f} {base_g / g:>7.3f} {gen_tokens / gw:>8.1f}")


if __name__ == "__main__":
    main()
