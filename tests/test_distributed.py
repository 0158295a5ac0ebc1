"""Sweeps and training under torch.distributed (2 gloo processes on CPU) equal the one-process run."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from easyedit_split.core.distributed import DistContext, context_from_env, current, shard_bounds
from tests import dist_workers


def _spawn(job, world_size: int, out) -> None:
    port = dist_workers.free_port()
    mp.start_processes(dist_workers._run, args=(world_size, port, job, str(out)), nprocs=world_size, join=True,
                       start_method="spawn")


def test_shard_bounds_cover_in_order():
    for n in range(9):
        for world in range(1, 5):
            blocks = [shard_bounds(n, r, world) for r in range(world)]
            assert blocks[0][0] == 0 and blocks[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
            sizes = [b - a for a, b in blocks]
            assert max(sizes) - min(sizes) <= 1
    ctx = DistContext(rank=1, world_size=3)
    assert ctx.shard(list("abcdefg")) == ["d", "e"]


def test_context_from_env_and_single_process():
    from easyedit_split.core.distributed import share_work

    assert current() == DistContext()
    with share_work(DistContext(1, 3)) as ctx:
        assert current() is ctx
    assert current() == DistContext()  # sharing is opt-in: an initialised group alone shares nothing
    assert context_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == DistContext(1, 2, 1)
    assert context_from_env({}).world_size == 1
    from easyedit_split.core.distributed import DistributedError

    with pytest.raises(DistributedError, match="RANK=2 and WORLD_SIZE=2"):
        context_from_env({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(DistributedError, match="WORLD_SIZE='x'"):
        context_from_env({"WORLD_SIZE": "x"})
    assert DistContext(0, 2, 1).device("cuda") == torch.device("cuda:1")
    assert DistContext(0, 2, 1).device("cpu") == torch.device("cpu")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same sweeps and trainings in one process and over two gloo ranks (one spawn each)."""
    out = tmp_path_factory.mktemp("dist")
    _spawn(dist_workers.sweep_and_train_job, 1, out)
    _spawn(dist_workers.sweep_and_train_job, 2, out)
    return out


def test_sweep_over_two_ranks_is_bitwise_the_one_process_sweep(runs):
    tmp_path = runs
    for name in ("vector", "lora", "local_weight", "many"):
        one, two = tmp_path / f"{name}_1.csv", tmp_path / f"{name}_2.csv"
        assert one.read_bytes() == two.read_bytes(), name
        a, b = np.load(tmp_path / f"{name}_1.npz"), np.load(tmp_path / f"{name}_2.npz")
        assert a.files == b.files and "L_p" in a.files
        for col in a.files:
            assert np.array_equal(a[col], b[col], equal_nan=True), (name, col)
            assert a[col].tobytes() == b[col].tobytes(), (name, col)


def test_training_over_two_ranks_equals_one_process(runs):
    from easyedit_split.core.serialization import load_updates

    tmp_path = runs
    l1 = json.loads((tmp_path / "loss_1.json").read_text())
    l2 = json.loads((tmp_path / "loss_2.json").read_text())
    worst = {}
    for form in ("vector", "lora"):
        assert len(l1[form]) == len(l2[form]) > 2
        assert np.allclose(l1[form], l2[form], rtol=1e-5, atol=1e-6), form
        (u1,) = load_updates(tmp_path / f"{form}_1.safetensors").updates
        (u2,) = load_updates(tmp_path / f"{form}_2.safetensors").updates
        (r2,) = load_updates(tmp_path / f"{form}_2_resumed.safetensors").updates
        p1, p2, pr = ({k: v.detach() for k, v in u.named_parameters()} for u in (u1, u2, r2))
        moved = max(float(p.detach().abs().max()) for p in p1.values())
        assert moved > 1e-3  # training changed something
        diff = max(float((p1[k] - p2[k]).abs().max()) for k in p1)
        worst[form] = (diff, float(np.abs(np.subtract(l1[form], l2[form])).max()))
        assert diff <= 1e-5, (form, diff)  # the sum order of the all-reduce differs: float rounding only
        # resumed under two ranks from rank 0's checkpoint: the uninterrupted two-rank parameters
        assert max(float((p2[k] - pr[k]).abs().max()) for k in p2) <= 1e-6
    print("max |2 ranks - 1 process| (trained parameters, loss history):", worst)


def test_cli_sweep_under_torchrun_writes_the_one_process_table(tmp_path):
    """`torchrun --nproc-per-node 2 -m easyedit_split.cli sweep ...` and the same command in one process."""
    import os
    import subprocess
    import sys

    from easyedit_split.core.serialization import save_updates
    from easyedit_split.core.sites import Site
    from easyedit_split.core.updates import VectorUpdate
    from tests.conftest import TINY_WORDS, build_tiny_tokenizer
    from tests.tiny_models import tiny_model

    model = tiny_model("llama")
    model.save_pretrained(tmp_path / "m")
    build_tiny_tokenizer().save_pretrained(tmp_path / "m")
    words = [w for w in TINY_WORDS if w.isalpha()]
    rows = [{"question": f"{words[i % len(words)]} {words[(3 * i) % len(words)]} ?",
             "answer_matching_behavior": " yes", "answer_not_matching_behavior": " no"} for i in range(24)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    vec = tmp_path / "vec.safetensors"
    save_updates(vec, [VectorUpdate(Site(1, "residual"), 32, vector=torch.randn(32, generator=torch.Generator().manual_seed(0)))],
                 model=model, method="sft")
    common = ["sweep", "--model", str(tmp_path / "m"), "--data", str(data), "--update", str(vec),
              "--multipliers=-1,0,0.5,2", "--n-pairs", "10", "--batch-rows", "8", "--fit-boot", "0", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    one = subprocess.run([sys.executable, "-m", "easyedit_split.cli", *common, "--output", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    assert one.returncode == 0, one.stderr
    port = str(dist_workers.free_port())
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                          "--master-addr", "127.0.0.1", "--master-port", port, "-m", "easyedit_split.cli", *common,
                          "--output", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert two.returncode == 0, two.stderr
    table = [p.name for p in (tmp_path / "one").glob("sweep_*.csv")]
    assert table
    for name in table:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert two.stdout.count("report:") == 1  # rank 0 alone reports
    assert not list((tmp_path / "two").glob(".partial*"))


def test_commands_that_do_not_shard_refuse_torchrun(monkeypatch, capsys, tmp_path):
    from easyedit_split.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["info", "--model", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "`info` runs in one process; start it without torchrun" in err


# ------------------------------------------------------------------ benchmarks/bench_distributed.py --quick-set helpers
def _bench_distributed():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_distributed.py"
    spec = importlib.util.spec_from_file_location("bench_distributed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_set_commands_are_one_process_and_torchrun(tmp_path):
    bd = _bench_distributed()
    args = bd.parse_args(["--quick-set", "--max-concepts", "2"])
    one = bd._bench_command(1, 2, tmp_path / "a", args)
    two = bd._bench_command(2, 1, tmp_path / "b", args)
    assert one[1:4] == ["-m", "easyedit_split.cli", "bench"] and "--quick" in one
    assert one[one.index("--threads") + 1] == "2" and one[one.index("--max-concepts") + 1] == "2"
    assert two[1:3] == ["-m", "torch.distributed.run"] and "--nproc-per-node=2" in two
    assert two[two.index("--threads") + 1] == "1" and two[two.index("--output") + 1] == str(tmp_path / "b")


def test_quick_set_comparison_sees_differences():
    bd = _bench_distributed()
    a = {"chosen": {"m": 1.5, "accuracy": 0.8, "util": 1.0}, "at_1": {"accuracy": 0.7}, "at_2": float("nan"),
         "per_m": {"1": [1.0, float("nan")]}}
    b = {"chosen": {"m": 1.5, "accuracy": 0.8, "util": 1.0 + 3e-6}, "at_1": {"accuracy": 0.7}, "at_2": float("nan"),
         "per_m": {"1": [1.0, float("nan")]}}
    assert bd._accuracies(a) == bd._accuracies(b)
    assert bd._largest_difference(a, b) == pytest.approx(3e-6)
    assert bd._largest_difference(a, a) == 0.0
    b["at_1"]["accuracy"] = 0.725
    assert bd._accuracies(a) != bd._accuracies(b)
