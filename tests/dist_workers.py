"""Work run in spawned processes by tests/test_distributed.py: one function per job, each run by every
rank of a gloo process group (``world_size`` 1: no group, the one-process reference, run the same way
and with the same single thread so that both sides do the same floating-point work)."""

from __future__ import annotations

import json
import os
import socket
import types
from pathlib import Path

import numpy as np
import torch

TOK = types.SimpleNamespace(pad_token_id=0, eos_token_id=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def encoded_pairs(n: int, seed: int, single: bool):
    from easyedit_split.data.encoding import EncodedPair

    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        prompt = torch.randint(2, 90, (int(torch.randint(3, 9, (1,), generator=g)),), generator=g).tolist()
        if single:
            pos, neg = [5 + (i % 2)], [6 - (i % 2)]
        else:
            pos = torch.randint(2, 45, (int(torch.randint(1, 4, (1,), generator=g)),), generator=g).tolist()
            neg = torch.randint(45, 90, (int(torch.randint(1, 4, (1,), generator=g)),), generator=g).tolist()
        out.append(EncodedPair(f"{'s' if single else 'q'}{i}", prompt, pos, neg))
    return out


def sample_updates():
    from easyedit_split.core.sites import Site
    from easyedit_split.core.updates import LocalWeightUpdate, LoRAUpdate, VectorUpdate

    g = torch.Generator().manual_seed(7)
    return {
        "vector": [VectorUpdate(Site(1, "residual"), 32, vector=torch.randn(32, generator=g))],
        "lora": [LoRAUpdate(Site(2, "mlp_down"), 48, 32, rank=2, A=torch.randn(2, 48, generator=g) * 0.3,
                            B=torch.randn(32, 2, generator=g) * 0.3)],
        "local_weight": [LocalWeightUpdate(Site(1, "attn_out"), 32, 32, weight=torch.randn(32, 32, generator=g) * 0.05,
                                           bias=torch.randn(32, generator=g) * 0.1)],
    }


def _run(rank: int, world_size: int, port: int, job, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    from easyedit_split.core.distributed import distributed

    with distributed() as ctx:
        assert ctx.world_size == world_size and ctx.rank == rank
        job(ctx, Path(out_dir))


def sweep_job(ctx, out: Path) -> None:
    from easyedit_split.evaluation.sweep import sweep, sweep_many, write_table
    from tests.tiny_models import tiny_model

    model = tiny_model("llama")
    data = encoded_pairs(9, 0, single=True) + encoded_pairs(7, 1, single=False)
    ups = sample_updates()
    grid = [-2.0, -0.5, 0.0, 1.0, 3.0]
    tables = {name: sweep(model, TOK, data, u, grid, batch_rows=8, progress=False) for name, u in ups.items()}
    tables["many"] = sweep_many(model, TOK, data, ups, grid, batch_rows=16, progress=False)
    if ctx.is_main:
        for name, t in tables.items():
            write_table(t, out / f"{name}_{ctx.world_size}.csv")
            numeric = t.select_dtypes("number")
            np.savez(out / f"{name}_{ctx.world_size}.npz", **{c: numeric[c].to_numpy() for c in numeric.columns})


def train_job(ctx, out: Path) -> None:
    from easyedit_split.core.serialization import load_updates
    from easyedit_split.training.hparams import SplitHyperParams
    from easyedit_split.training.trainer import Trainer
    from tests.tiny_models import tiny_model

    model = tiny_model("llama")
    results = {}
    for form, single in (("vector", True), ("lora", False)):
        data = encoded_pairs(10, 3, single=single)  # batch 3: the last minibatch of one pair leaves rank 1 idle
        hp = SplitHyperParams.from_dict({"layers": [2], "lr": 0.05, "n_epochs": 2, "batch_size": 3,
                                         "gradient_accumulation_steps": 2, "steering_factors": [0.5, 1.0, 1.5],
                                         "seed": 3, "intervention_method": form, "max_grad_norm": 1.0})
        path = out / f"{form}_{ctx.world_size}.safetensors"
        res = Trainer(model, TOK, hp).train(data, output_path=path, progress=False)
        results[form] = res.loss_history
        # interrupted after 2 steps and resumed: the same parameters as the uninterrupted run
        ck = out / f"ckpt_{form}_{ctx.world_size}"
        hp_ck = SplitHyperParams.from_dict({**hp.to_dict(), "checkpoint_every": 1})
        Trainer(model, TOK, hp_ck).train(data, checkpoint_dir=ck, progress=False, max_steps=2)
        resumed = Trainer(model, TOK, hp_ck).train(data, checkpoint_dir=ck, resume=True, progress=False,
                                                   output_path=out / f"{form}_{ctx.world_size}_resumed.safetensors")
        assert resumed.steps == res.steps
    if ctx.is_main:
        (out / f"loss_{ctx.world_size}.json").write_text(json.dumps(results))
        for form in ("vector", "lora"):
            load_updates(out / f"{form}_{ctx.world_size}.safetensors")  # written completely by rank 0


def sweep_and_train_job(ctx, out: Path) -> None:
    sweep_job(ctx, out)
    train_job(ctx, out)
