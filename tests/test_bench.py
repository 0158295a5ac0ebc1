"""The many-concept benchmark: end to end on a tiny model, resuming, settings refused, statistics, splits."""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from easyedit_split.bench.aggregate import (
    aggregate,
    bootstrap_interval,
    failures,
    paired_difference,
    summary_stats,
)
from easyedit_split.bench.cells import assigned, assigned_by_concept, plan_cells
from easyedit_split.bench.concepts import (
    concept_files,
    embedded_concepts_dir,
    load_concept_pairs,
    recorded_split,
    roles_for,
    split_concepts,
    split_pairs,
)
from easyedit_split.bench.select import choose_factor
from easyedit_split.cli import DISTRIBUTED_COMMANDS, main
from easyedit_split.core.distributed import DistContext
from easyedit_split.data.formats import DataError
from easyedit_split.data.pairs import pair_digests
from tests import bench_fixtures as bf

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return bf.setup(tmp_path_factory.mktemp("bench"))


@pytest.fixture(scope="module")
def reference_run(paths, tmp_path_factory):
    """One complete single-process run (reused by several tests)."""
    out = tmp_path_factory.mktemp("ref") / "out"
    assert main(bf.bench_args(paths, out)) == 0
    return out


def _cells(out: Path) -> dict[str, dict]:
    return {f"{p.parent.name}/{p.stem}": json.loads(p.read_text()) for p in sorted((out / "cells").glob("*/*.json"))}


def _comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("seconds", "timings", "rank", "mixed_sweep")}


def _max_float_difference(a, b, path: str = "") -> float:
    """The largest |a − b| over the numbers of two records with the same structure (an assertion names the
    first place where the structure, a string or an integer differs)."""
    if isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        return max([_max_float_difference(a[k], b[k], f"{path}.{k}") for k in a] or [0.0])
    if isinstance(a, list):
        assert len(a) == len(b), path
        return max([_max_float_difference(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b))] or [0.0])
    if isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None, (path, a, b)
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), (path, a, b)
            return 0.0
        return abs(float(a) - float(b))
    assert a == b, (path, a, b)
    return 0.0


def _accuracies(record: dict) -> list:
    """Every accuracy of a cell record, and its per-example correctness matrices (must be equal, not close)."""
    out = [record.get("chosen", {}).get(k) for k in ("m", "accuracy", "val_accuracy")]
    out += [v["accuracy"] for v in record.get("per_m", {}).values()]
    out += [v["accuracy"] for v in record.get("val_per_m", {}).values()]
    out += [(m["m_star"], m["accuracy"]) for m in record.get("matched", [])]
    out += [record.get("per_example", {}).get(p, {}).get("correct") for p in ("val", "test")]
    return out


def test_end_to_end_on_a_tiny_model(reference_run):
    out = reference_run
    cells = _cells(out)
    assert len(cells) == 3 * 5  # 3 concepts x (split, sft, reps, diffmean, prompt)
    results = json.loads((out / "results.json").read_text())
    assert set(results["concepts"]) == set(bf.CONCEPTS) and not results["missing_concepts"]
    assert set(results["methods"]) == {"split_vector", "sft_vector", "reps_vector", "diffmean_vector", "prompt"}
    for name, rec in cells.items():
        assert rec["status"] == "ok", (name, rec.get("error"))
        assert len(rec["settings"]["data"]) == 3 and rec["fingerprint"]
        if rec["method"] == "prompt":
            assert rec["chosen"]["m"] is None and "trait: " in rec["prompt"]
            continue
        # the factor is the best validation accuracy among m > 0 ...
        val = {float(m): v for m, v in rec["val_per_m"].items()}
        assert rec["chosen"]["m"] > 0 and rec["chosen"]["val_accuracy"] == max(v["accuracy"] for m, v in val.items() if m > 0)
        # ... and every reported number is on the test pairs
        assert rec["chosen"]["accuracy"] == rec["per_m"][f"{rec['chosen']['m']:g}"]["accuracy"]
        assert rec["dial"] == pytest.approx(rec["per_m"]["2"]["accuracy"] - rec["per_m"]["1"]["accuracy"])
        assert rec["fits"]["pref"]["status"] == "ok" and rec["fits"]["pref"]["r2"] is not None
        assert rec["fits"]["pref_per_side"]["status"] == "skipped"  # 11 points: the design form only
    for concept in bf.CONCEPTS:
        c = json.loads((out / "concepts" / f"{concept}.json").read_text())
        assert set(c["cells"]) == {"split_vector", "sft_vector", "reps_vector", "diffmean_vector", "prompt"}
        assert "per_example" not in c["cells"]["split_vector"] and "split_vector" in c["matched_vs_split"]
    report = (out / "report.md").read_text()
    assert "| SPLIT (vector) | 3 |" in report and "SFT (vector) − SPLIT (vector)" in report
    for png in ("accuracy_vs_split.png", "dial.png"):
        assert (out / png).stat().st_size > 1000
    assert not list(out.rglob("*.tmp"))


def test_rerun_reuses_every_cell_and_other_settings_are_refused(paths, reference_run, tmp_path, capsys):
    out = tmp_path / "out"
    import shutil

    shutil.copytree(reference_run, out)
    before = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*/*.json")}
    assert main(bf.bench_args(paths, out)) == 0
    assert "0 cell(s) run, 15 reused" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*/*.json")}
    # other settings: refused, nothing touched
    assert main(bf.bench_args(paths, out, "--seed", "1")) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "seed" in err and "--overwrite" in err
    assert before == {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*/*.json")}
    # a cell file with a foreign fingerprint is never reused: it runs again
    victim = out / "cells" / "likes-things" / "sft_vector.json"
    rec = json.loads(victim.read_text())
    rec["fingerprint"] = "0" * 16
    rec["chosen"]["accuracy"] = -1.0
    victim.write_text(json.dumps(rec))
    assert main(bf.bench_args(paths, out)) == 0
    assert "1 cell(s) run, 14 reused" in capsys.readouterr().out
    assert json.loads(victim.read_text())["chosen"]["accuracy"] >= 0
    # --overwrite with one method fewer: the others' files are kept only where the fingerprints match
    assert main(bf.bench_args(paths, out, "--methods", "split,prompt", "--overwrite")) == 0
    assert "0 cell(s) run, 6 reused" in capsys.readouterr().out
    assert sorted(p.stem for p in (out / "cells" / "likes-things").glob("*.json")) == ["prompt", "split_vector"]


def test_resume_after_a_kill(paths, reference_run, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EASYEDIT_SPLIT_BENCH_KILL_AT": "likes-things/reps_vector"}
    cmd = [sys.executable, "-m", "easyedit_split.cli", *bf.bench_args(paths, out)]
    killed = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    done = sorted(p.parent.name + "/" + p.stem for p in (out / "cells").glob("*/*.json"))
    assert done == ["hates-things/diffmean_vector", "hates-things/prompt", "hates-things/reps_vector",
                    "hates-things/sft_vector", "hates-things/split_vector", "likes-things/sft_vector",
                    "likes-things/split_vector"]
    assert not (out / "results.json").exists()
    kept = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*/*.json")}
    # --report-only aggregates the complete concepts and runs nothing
    assert main(bf.bench_args(paths, out, "--report-only")) == 0
    partial = json.loads((out / "results.json").read_text())
    assert partial["concepts"] == ["hates-things"] and partial["missing_concepts"] == ["likes-things", "short-answers"]
    env.pop("EASYEDIT_SPLIT_BENCH_KILL_AT")
    rerun = subprocess.run(cmd[:3] + ["-v"] + cmd[3:], check=False, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "0 reused" not in rerun.stdout and "8 cell(s) run, 7 reused" in rerun.stdout
    assert kept == {p: p.stat().st_mtime_ns for p in kept}  # finished cells were not redone
    ref = _cells(reference_run)
    assert {k: _comparable(v) for k, v in _cells(out).items()} == {k: _comparable(v) for k, v in ref.items()}


@pytest.fixture(scope="module")
def mixed_run(paths, tmp_path_factory):
    """A --mixed-sweeps run killed before its 7th trained cell's training, then resumed in-process."""
    out = tmp_path_factory.mktemp("mixed") / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EASYEDIT_SPLIT_BENCH_KILL_AT": "likes-things/sft_vector"}
    cmd = [sys.executable, "-m", "easyedit_split.cli", *bf.bench_args(paths, out, "--mixed-sweeps")]
    killed = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    kept = out / "cells" / "likes-things" / "split_vector.safetensors"  # trained before the kill
    assert kept.is_file() and not (out / "cells" / "likes-things" / "split_vector.json").exists()
    before = kept.stat().st_mtime_ns
    assert main(bf.bench_args(paths, out, "--mixed-sweeps")) == 0
    assert kept.stat().st_mtime_ns == before  # loaded, not trained again
    return out


def test_mixed_sweeps_equal_the_per_cell_path(reference_run, mixed_run, paths, tmp_path, capsys):
    mixed, ref = _cells(mixed_run), _cells(reference_run)
    assert set(mixed) == set(ref) and len(mixed) == 15
    worst = 0.0
    for key, rec in mixed.items():
        assert rec["status"] == "ok" and rec["fingerprint"] == ref[key]["fingerprint"], key
        assert rec["mixed_sweep"] is (rec["method"] != "prompt")
        assert _accuracies(rec) == _accuracies(ref[key]), key  # accuracies and correctness: equal
        worst = max(worst, _max_float_difference(_comparable(rec), _comparable(ref[key]), key))
    assert worst <= 1e-5  # PrefOdds, UtilOdds, fits: float rounding only (other batch shapes)
    reused = json.loads((mixed_run / "cells" / "likes-things" / "split_vector.json").read_text())
    assert reused["timings"]["update_reused"] == 1.0 and reused["final_loss"] == ref["likes-things/split_vector"]["final_loss"]
    assert sorted(p.stem for p in (mixed_run / "cells" / "hates-things").glob("*.safetensors")) == [
        "diffmean_vector", "reps_vector", "sft_vector", "split_vector"]  # every trained cell, not the prompt
    assert json.loads((mixed_run / "bench.json").read_text())["mixed_sweeps"] is True
    assert json.loads((mixed_run / "results.json").read_text())["settings"]["mixed_sweeps"] is True
    # the sweep path is not in the fingerprints: a per-cell run resumes with --mixed-sweeps and vice versa
    import shutil

    out = tmp_path / "out"
    shutil.copytree(reference_run, out)
    assert main(bf.bench_args(paths, out, "--mixed-sweeps")) == 0
    assert "0 cell(s) run, 15 reused" in capsys.readouterr().out


DIST_METHODS = ["split", "diffmean", "prompt"]  # 9 cells: enough for both ranks, light enough for a test


def _torchrun(paths, out, env_extra=None, timeout=600, extra=()):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env_extra or {})}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
           "-m", "easyedit_split.cli",
           *bf.bench_args(paths, out, "--device", "cpu", "--methods", ",".join(DIST_METHODS), *extra)]
    return subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=timeout)


def test_bench_runs_under_torchrun_without_shared_sweeps():
    assert DISTRIBUTED_COMMANDS["bench"] is False  # each rank runs its own cells; no sharing inside a sweep
    plan = plan_cells(sorted(bf.CONCEPTS), DIST_METHODS, ["vector"])
    shares = [assigned_by_concept(plan, DistContext(r, 2, r)) for r in range(2)]
    assert [sorted({c.concept for c in s}) for s in shares] == [["hates-things", "short-answers"], ["likes-things"]]
    assert sorted(c.key for s in shares for c in s) == sorted(c.key for c in plan)


def test_mixed_sweeps_on_two_ranks_equal_one_process(paths, mixed_run, tmp_path):
    out = tmp_path / "dist-mixed"
    run = _torchrun(paths, out, extra=("--mixed-sweeps",))
    assert run.returncode == 0, run.stderr[-3000:]
    cells = _cells(out)
    assert len(cells) == 9
    by_rank = {}
    for key, rec in cells.items():
        by_rank.setdefault(rec["concept"], set()).add(rec["rank"])
    assert by_rank == {"hates-things": {0}, "likes-things": {1}, "short-answers": {0}}  # whole concepts
    # the same mixed passes (split and diffmean of a concept together) on one rank: equal to float rounding
    # to the one-process run, whose mixed passes held four trained cells per concept
    ref = _cells(mixed_run)
    for key, rec in cells.items():
        assert _accuracies(rec) == _accuracies(ref[key]), key
        assert _max_float_difference(_comparable(rec), _comparable(ref[key]), key) <= 1e-5


def test_two_ranks_equal_one_process_and_a_killed_rank_resumes(paths, reference_run, tmp_path):
    out = tmp_path / "dist"
    plan = plan_cells(sorted(bf.CONCEPTS), DIST_METHODS, ["vector"])
    rank1 = assigned(plan, DistContext(1, 2, 1))
    assert [c.key for c in rank1] == [plan[i].key for i in (1, 3, 5, 7)]  # every other cell
    victim = rank1[2]  # rank 1 dies as if killed before its third cell
    run = _torchrun(paths, out, {"EASYEDIT_SPLIT_BENCH_KILL_AT": victim.key})
    assert run.returncode != 0
    after_kill = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*/*.json")}
    assert not (out / f"cells/{victim.key}.json").exists() and len(after_kill) < len(plan)
    assert all((out / f"cells/{c.key}.json").exists() for c in rank1[:2])
    assert not (out / "results.json").exists()
    run = _torchrun(paths, out)
    assert run.returncode == 0, run.stderr[-3000:]
    cells = _cells(out)
    assert len(cells) == len(plan) and {r["rank"] for r in cells.values()} == {0, 1}
    assert all(p.stat().st_mtime_ns == t for p, t in after_kill.items())  # only the missing cells ran
    ref = {k: v for k, v in _cells(reference_run).items() if k in cells}
    assert {k: _comparable(v) for k, v in cells.items()} == {k: _comparable(v) for k, v in ref.items()}
    a = json.loads((out / "results.json").read_text())["methods"]
    b = json.loads((reference_run / "results.json").read_text())["methods"]
    assert a == {k: b[k] for k in a}


# ------------------------------------------------------------------------------------ statistics


def test_summary_stats_by_hand():
    s = summary_stats([0.5, 0.9, None, 0.7, float("nan"), 0.6], n_boot=500, seed=3)
    assert s["n"] == 4 and s["median"] == pytest.approx(0.65) and s["mean"] == pytest.approx(0.675)
    assert s["q25"] == pytest.approx(0.575)  # linear interpolation between 0.5, 0.6, 0.7, 0.9
    lo, hi = s["median_ci"]
    assert 0.5 <= lo <= 0.65 <= hi <= 0.9
    # the bootstrap interval is the percentile interval of the statistic over seeded resamples
    x = np.array([0.5, 0.9, 0.7, 0.6])
    idx = np.random.default_rng(3).integers(0, 4, size=(500, 4))
    expected = np.quantile([np.mean(x[r]) for r in idx], [0.025, 0.975])
    assert s["mean_ci"] == pytest.approx(list(expected))
    assert summary_stats([None, float("nan")])["n"] == 0
    assert bootstrap_interval([1.0], np.mean) == (None, None)


def test_paired_difference_and_failures_by_hand():
    method = [0.80, 0.70, 0.91, None, 0.50]
    split = [0.75, 0.71, 0.80, 0.90, 0.60]
    d = paired_difference(method, split, tie=0.02, n_boot=0)
    # differences over the 4 concepts with both: +0.05, -0.01, +0.11, -0.10
    assert d["n"] == 4 and (d["wins"], d["ties"], d["losses"]) == (2, 1, 1)
    assert d["mean"] == pytest.approx(0.0125) and d["median"] == pytest.approx(0.02)
    lower_better = paired_difference([1.0, 3.0], [2.0, 2.0], tie=0.1, higher_is_better=False, n_boot=0)
    assert (lower_better["wins"], lower_better["losses"]) == (1, 1)
    assert failures(["a", "b", "c", "d"], [0.60, 0.59, None, 0.9], [0.5, 0.5, 0.5, float("nan")]) == ["b", "c", "d"]


def test_aggregate_against_hand_computed_values():
    def rec(acc_chosen, acc1, acc2, unsteered, util_matched):
        return {"status": "ok", "chosen": {"accuracy": acc_chosen, "m": 1.0, "util": 0.0, "pref": 0.0},
                "at_1": {"accuracy": acc1}, "at_2": {"accuracy": acc2}, "dial": acc2 - acc1,
                "unsteered": {"accuracy": unsteered}, "matched": [{"target": 0.75, "util": util_matched}],
                "fits": {"pref": {"r2": 0.9, "status": "ok"}, "util": {"r2": 0.5, "status": "failed"}}}

    by = {"split_vector": {"a": rec(0.8, 0.8, 0.7, 0.5, 1.0), "b": rec(0.9, 0.85, 0.9, 0.5, None),
                           "c": rec(0.55, 0.6, 0.6, 0.5, 2.0)},
          "sft_vector": {"a": rec(0.7, 0.7, 0.5, 0.5, 3.0), "b": rec(0.9, 0.9, 0.6, 0.5, 0.0),
                         "c": rec(0.65, 0.65, 0.6, 0.5, 1.0)}}
    agg = aggregate(by, metrics=["acc_chosen", "dial", "util_matched@0.75", "r2_pref", "r2_util"],
                    reference_for=lambda n: "split_vector", n_boot=0)
    split, sft = agg["split_vector"], agg["sft_vector"]
    assert split["metrics"]["acc_chosen"]["median"] == pytest.approx(0.8)
    assert split["metrics"]["dial"]["mean"] == pytest.approx((-0.1 + 0.05 + 0.0) / 3)
    assert split["metrics"]["util_matched@0.75"]["n"] == 2 and split["metrics"]["r2_util"]["n"] == 0
    assert split["failures"] == ["c"] and sft["failures"] == []
    vs = sft["vs_reference"]
    assert vs["reference"] == "split_vector"
    assert (vs["acc_chosen"]["wins"], vs["acc_chosen"]["ties"], vs["acc_chosen"]["losses"]) == (1, 1, 1)
    assert vs["acc_chosen"]["mean"] == pytest.approx((-0.1 + 0.0 + 0.1) / 3)
    assert vs["util_matched@0.75"]["n"] == 2 and vs["util_matched@0.75"]["mean"] == pytest.approx(0.5)
    assert split["vs_reference"] == {}


def test_choose_factor_rule():
    val = {0.0: {"accuracy": 0.9, "util": 9.0}, 0.5: {"accuracy": 0.7, "util": 1.0}, 1.0: {"accuracy": 0.8, "util": 0.0},
           2.0: {"accuracy": 0.8, "util": 0.5}, 3.0: {"accuracy": 0.8, "util": 0.5}}
    assert choose_factor(val).m == 2.0  # m = 0 is never chosen; tie on accuracy -> utility -> smaller m
    assert choose_factor({1.0: {"accuracy": 0.6, "util": float("nan")}, 2.0: {"accuracy": 0.6, "util": -5.0}}).m == 2.0


# ------------------------------------------------------------------------------------ concepts


def test_concept_split_is_deterministic_and_recorded():
    rec = recorded_split()
    names = rec["all"]["tuning"] + rec["all"]["report"]
    assert len(names) == 120 and len(rec["all"]["tuning"]) == 30 and "psychopathy" in rec["all"]["tuning"]
    again = split_concepts(reversed(names), seed=rec["seed"])
    assert again.tuning == rec["all"]["tuning"] and again.report == rec["all"]["report"]
    assert split_concepts(names, seed=1).tuning != rec["all"]["tuning"]
    # the embedded subset: its concepts keep their recorded roles
    files = concept_files(embedded_concepts_dir())
    assert sorted(files) == sorted(rec["embedded"]["tuning"] + rec["embedded"]["report"])
    roles = roles_for(files)
    assert roles.report == rec["embedded"]["report"] and roles.tuning == rec["embedded"]["tuning"]
    assert set(roles.report) <= set(rec["all"]["report"]) and "recorded" in roles.source
    for name, path in files.items():
        raw = gzip.decompress(path.read_bytes())
        import hashlib

        assert hashlib.sha256(raw).hexdigest() == rec["sha256"][name]  # unchanged copies of the source files
    assert "CC BY 4.0" in (embedded_concepts_dir().parent / "README.md").read_text()


def test_pair_split_is_disjoint_deduplicated_and_seeded(paths):
    pairs = load_concept_pairs(paths["concepts"] / "short-answers.jsonl")  # EasyEdit layout, one duplicate row
    assert len(pairs) == 28 and len(set(pair_digests(pairs))) == 28
    s = split_pairs("short-answers", pairs, n_train=8, n_val=4, n_test=6, seed=0)
    parts = [set(pair_digests(getattr(s, p))) for p in ("train", "val", "test")]
    assert [len(p) for p in parts] == [8, 4, 6] and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert split_pairs("short-answers", pairs, n_train=8, n_val=4, n_test=6, seed=0).digests() == s.digests()
    assert split_pairs("short-answers", pairs, n_train=8, n_val=4, n_test=6, seed=1).digests() != s.digests()
    with pytest.raises(DataError, match="short-answers.*28 distinct pairs"):
        split_pairs("short-answers", pairs, n_train=20, n_val=5, n_test=5, seed=0)


def test_bad_concept_folders(tmp_path, paths, capsys):
    with pytest.raises(DataError, match="no <concept>.jsonl files"):
        concept_files(tmp_path)
    (tmp_path / "a.jsonl").write_text("{}\n")
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(b"{}\n"))
    with pytest.raises(DataError, match="two files"):
        concept_files(tmp_path)
    assert main(bf.bench_args(paths, tmp_path / "o", "--concepts", "nope")) == 2
    assert "not in" in capsys.readouterr().err
    assert main(bf.bench_args(paths, tmp_path / "o", "--multipliers=0,1,2")) == 2
    assert "fits need at least" in capsys.readouterr().err
    assert main(bf.bench_args(paths, tmp_path / "o", "--set", "split.lr")) == 2
    assert "METHOD.KEY=VALUE" in capsys.readouterr().err


def test_embedded_concepts_read_like_the_source(tmp_path):
    files = concept_files(embedded_concepts_dir())
    name, path = next(iter(files.items()))
    plain = tmp_path / f"{name}.jsonl"
    plain.write_bytes(gzip.decompress(path.read_bytes()))
    a, b = load_concept_pairs(path), load_concept_pairs(plain)
    assert [(p.id, p.question, p.positive, p.negative) for p in a] == [(p.id, p.question, p.positive, p.negative) for p in b]
    assert math.isclose(len(a), 1000, rel_tol=0.5)
