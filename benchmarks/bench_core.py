"""Forward and generate() throughput of SmolLM2-135M under each update form, hook vs merged mode.

Every figure is a ratio to the unsteered model measured in the same run: one torch thread, each
measurement paired with an unsteered one right before it, process CPU time, median of the ratios.
Targets: merged >= 0.97 of unsteered, hook mode >= 0.90.

    python benchmarks/bench_core.py [--reps 9] [--batch 4] [--seq 64] [--gen-batch 8] [--new-tokens 16]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--gen-batch", type=int, default=8)
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--model", default=None)
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)

    from easyedit_split.core.apply import apply_updates, merged_updates
    from easyedit_split.core.models import load_model
    from easyedit_split.core.sites import Site, resolve_site
    from easyedit_split.core.updates import LocalWeightUpdate, LoRAUpdate, VectorUpdate

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

    # Paired design: every measurement of a configuration is bracketed by a measurement of the
    # unsteered model right before it, and the ratio of the two is kept. Slow drifts of the machine
    # (frequency, the other core's load) cancel in each ratio; the median over repetitions is reported.
    ratios: dict[str, dict[str, list[float]]] = {k: {"forward": [], "generate": []} for k in configs}
    speed: dict[str, dict[str, list[float]]] = {k: {"forward": [], "generate": []} for k in configs}
    for ctx in configs.values():  # warm-up
        with ctx():
            forward_once()
    for kind, once, reps, tokens in (("forward", forward_once, args.reps, args.batch * args.seq),
                                     ("generate", generate_once, max(1, args.reps // 2), args.gen_batch * args.new_tokens)):
        for _ in range(reps):
            for name, ctx in configs.items():
                if name == "unsteered":
                    continue
                base_cpu, _ = once()
                with ctx():
                    cpu, _ = once()
                ratios[name][kind].append(base_cpu / cpu)
                speed[name][kind].append(tokens / cpu)
                speed["unsteered"][kind].append(tokens / base_cpu)

    print(f"machine: {platform.processor() or platform.machine()}, torch threads: {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"model: {type(model).__name__} {model.config._name_or_path}; site layer {args.layer}; "
          f"forward {args.batch}x{args.seq} tokens, generate {args.gen_batch} prompts x {args.new_tokens} new tokens")
    print("median tokens per CPU second, and median of paired ratios to the unsteered run just before")
    print(f"{'config':<20} {'fwd tok/s':>10} {'ratio':>7} {'gen tok/s':>10} {'ratio':>7}")
    for name in configs:
        f = statistics.median(speed[name]["forward"])
        g = statistics.median(speed[name]["generate"])
        rf = statistics.median(ratios[name]["forward"]) if ratios[name]["forward"] else 1.0
        rg = statistics.median(ratios[name]["generate"]) if ratios[name]["generate"] else 1.0
        print(f"{name:<20} {f:>10.1f} {rf:>7.3f} {g:>10.1f} {rg:>7.3f}")


if __name__ == "__main__":
    main()
