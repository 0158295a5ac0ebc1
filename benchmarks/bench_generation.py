"""Steered generation throughput on SmolLM2-135M: plain batched generate() vs easyedit_split.generate.

16 chat prompts x 32 new tokens (forced with min_new_tokens, so every run emits the same number of
tokens), greedy, one torch thread. Every configuration is timed in the same run, in interleaved
rounds (order rotated each round); the figure is the median over rounds, reported as tokens/s and as a
ratio to plain batched ``model.generate`` (left padding). Target: hook mode >= 0.9 of plain.

Two clocks: wall time, and the process's CPU time. On a shared machine (other jobs competing for the
cores) wall time swings by 2x between rounds; CPU time of a one-thread process does not, so the
ratios are computed from CPU time.

Also timed (on 4 prompts, to keep the run short): EasyEdit's way, one prompt at a time under a hook.

    python benchmarks/bench_generation.py [--rounds 3] [--prompts 16] [--new-tokens 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

PROMPTS = [
    "Tell me about your favourite book.",
    "How should I spend a free weekend?",
    "What do you think about people who break rules?",
    "Write a short poem about the sea.",
    "Give me advice on making new friends.",
    "Is it ever acceptable to lie?",
    "Describe a perfect breakfast.",
    "What makes a good leader?",
    "How do I deal with a rude coworker?",
    "Explain why the sky is blue.",
    "What would you do with a million dollars?",
    "Summarise the plot of a fairy tale you like.",
    "What is the best way to learn a language?",
    "How do you feel about competition?",
    "Suggest a name for a new coffee shop.",
    "What should I cook tonight?",
]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--one-at-a-time-prompts", type=int, default=4)
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", default=None, help="also write the figures here")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)

    from easyedit_split.core.apply import apply_updates
    from easyedit_split.core.generation import generate, left_padded_batch, render_prompts
    from easyedit_split.core.models import load_model
    from easyedit_split.core.sites import Site, resolve_site
    from easyedit_split.core.updates import LocalWeightUpdate, LoRAUpdate, VectorUpdate

    model, tok = load_model(args.model)
    prompts = (PROMPTS * (args.prompts // len(PROMPTS) + 1))[: args.prompts]
    n_new = args.new_tokens
    L = args.layer

    res = resolve_site(model, Site(L, "residual"))
    down = resolve_site(model, Site(L, "mlp_down"))
    g = torch.Generator().manual_seed(0)
    updates = {
        "vector": VectorUpdate(
            Site(L, "residual"), res.d_out, vector=torch.randn(res.d_out, generator=g) * 0.5
        ),
        "lora": LoRAUpdate(
            Site(L, "mlp_down"),
            down.d_in,
            down.d_out,
            rank=4,
            A=torch.randn(4, down.d_in, generator=g) * 0.02,
            B=torch.randn(down.d_out, 4, generator=g) * 0.02,
        ),
        "local_weight": LocalWeightUpdate(
            Site(L, "mlp_down"),
            down.d_in,
            down.d_out,
            weight=torch.randn(down.d_out, down.d_in, generator=g) * 0.002,
            bias=torch.randn(down.d_out, generator=g) * 0.05,
        ),
    }
    common = {"max_new_tokens": n_new, "min_new_tokens": n_new, "batch_size": len(prompts), "progress": False}

    rendered, _ = render_prompts(tok, prompts)
    enc = left_padded_batch(tok, rendered, add_special_tokens=False, device="cpu")

    def plain():
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=n_new,
                min_new_tokens=n_new,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        return (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]

    def ours(update=(), m=1.0, mode="hook"):
        def run():
            gens = generate(model, tok, prompts, update, m, mode=mode, **common)
            return len(gens) * n_new

        return run

    per_row = [(-1.0) ** i * (1 + i % 4) for i in range(len(prompts))]
    configs = {
        "plain model.generate (batched)": plain,
        "generate(), no update": ours(),
        "hook vector (residual)": ours(updates["vector"], 4.0),
        "hook vector, per-row multipliers": ours(updates["vector"], per_row),
        "hook lora (mlp_down)": ours(updates["lora"], 1.0),
        "hook local_weight (mlp_down)": ours(updates["local_weight"], 1.0),
        "merged vector": ours(updates["vector"], 4.0, "merged"),
        "merged lora": ours(updates["lora"], 1.0, "merged"),
        "merged local_weight": ours(updates["local_weight"], 1.0, "merged"),
    }
    plain()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in configs}
    wall: dict[str, list[float]] = {k: [] for k in configs}
    names = list(configs)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            w0, c0 = time.perf_counter(), time.process_time()
            n_tokens = configs[name]()
            times[name].append(n_tokens / (time.process_time() - c0))
            wall[name].append(n_tokens / (time.perf_counter() - w0))
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    # EasyEdit's way: one prompt at a time, hooked (4 prompts)
    k = args.one_at_a_time_prompts
    one_rates, one_wall = [], []
    if k > 0:
        for _ in range(max(1, args.rounds - 1)):
            w0, t0 = time.perf_counter(), time.process_time()
            total = 0
            with apply_updates(model, updates["vector"], 4.0):
                for text in rendered[:k]:
                    ids = tok(text, add_special_tokens=False, return_tensors="pt")
                    with torch.no_grad():
                        out = model.generate(
                            **ids,
                            max_new_tokens=n_new,
                            min_new_tokens=n_new,
                            do_sample=False,
                            pad_token_id=tok.pad_token_id,
                        )
                    total += out.shape[1] - ids["input_ids"].shape[1]
            one_rates.append(total / (time.process_time() - t0))
            one_wall.append(total / (time.perf_counter() - w0))

    base = statistics.median(times["plain model.generate (batched)"])
    print(
        f"\nSmolLM2-135M-Instruct, {len(prompts)} prompts x {n_new} new tokens, greedy, torch threads=1, "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.rounds} rounds (median)"
    )
    print(f"{'configuration':<42} {'tok/s CPU':>9} {'ratio':>6} {'tok/s wall':>10}")
    figures = {}
    if one_rates:
        name = f"one prompt at a time, hooked ({k} prompts)"
        times[name], wall[name] = one_rates, one_wall
    for name, rates in times.items():
        med = statistics.median(rates)
        wmed = statistics.median(wall[name])
        figures[name] = {
            "tokens_per_cpu_s": med,
            "ratio_to_plain": med / base,
            "tokens_per_wall_s": wmed,
            "all_cpu": rates,
            "all_wall": wall[name],
        }
        print(f"{name:<42} {med:>9.1f} {med / base:>6.3f} {wmed:>10.1f}")
    if args.json:
        from easyedit_split.base.atomic_io import atomic_write_json

        atomic_write_json(args.json, {"prompts": len(prompts), "new_tokens": n_new, "figures": figures})


if __name__ == "__main__":
    main()
