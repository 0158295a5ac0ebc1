"""Forward and generate() throughput of SmolLM2-135M under each update form, hook vs merged mode.

Every figure is a ratio to the unsteered model measured in the same run (one torch thread,
interleaved repetitions, median). Targets: merged >= 0.97 of unsteered, hook mode >= 0.90.

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

    def forward_once() -> float:
        t = time.perf_counter()
        with torch.no_grad():
            model(input_ids=ids, use_cache=False)
        return time.perf_counter() - t

    def generate_once() -> float:
        t = time.perf_counter()
        with torch.no_grad():
            model.generate(**enc, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                           pad_token_id=tok.pad_token_id)
        return time.perf_counter() - t

    results: dict[str, dict[str, list[float]]] = {k: {"forward": [], "generate": []} for k in configs}
    for name, ctx in configs.items():  # warm-up
        with ctx():
            forward_once()
    for rep in range(args.reps):
        for name, ctx in configs.items():  # interleaved so drifts in machine load hit every config alike
            with ctx():
                results[name]["forward"].append(forward_once())
                if rep < max(1, args.reps // 2):
                    results[name]["generate"].append(generate_once())

    fwd_tokens = args.batch * args.seq
    gen_tokens = args.gen_batch * args.new_tokens
    base_f = statistics.median(results["unsteered"]["forward"])
    base_g = statistics.median(results["unsteered"]["generate"])
    print(f"machine: {platform.processor() or platform.machine()}, torch threads: {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"model: {type(model).__name__} {model.config._name_or_path}; site layer {args.layer}; "
          f"forward {args.batch}x{args.seq} tokens, generate {args.gen_batch} prompts x {args.new_tokens} new tokens")
    print(f"{'config':<20} {'fwd tok/s':>10} {'ratio':>7} {'gen tok/s':>10} {'ratio':>7}")
    for name, r in results.items():
        f = statistics.median(r["forward"])
        g = statistics.median(r["generate"])
        print(f"{name:<20} {fwd_tokens / f:>10.1f} {base_f / f:>7.3f} {gen_tokens / g:>10.1f} {base_g / g:>7.3f}")


if __name__ == "__main__":
    main()
