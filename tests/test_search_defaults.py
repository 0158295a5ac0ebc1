"""benchmarks/search_defaults.py on a tiny model: an explicit --points plan runs end to end and bad
plans are refused before any work."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.easyedit_checkout import save_tiny_llama

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import search_defaults


def _points(tmp_path, entries) -> Path:
    path = tmp_path / "points.json"
    path.write_text(json.dumps(entries))
    return path


def test_explicit_points_run_end_to_end(tmp_path):
    model = save_tiny_llama(tmp_path / "tiny-llama")
    points = _points(tmp_path, [
        {"objective": "split", "form": "vector", "name": "v1", "point": {"n_epochs": 1, "lr": 0.1}},
        {"objective": "split", "form": "lora", "name": "l1", "point": {"n_epochs": 1, "steering_factors": [0.5, 1.0]}},
    ])
    out = tmp_path / "refine.json"
    assert search_defaults.main(["--model", str(model), "--points", str(points), "--n-train", "8", "--n-val", "8",
                                 "--test-size", "8", "--multipliers", "0,1,2", "--instructions", "",
                                 "--train-instructions", "", "--threads", "1", "--set", "layers=[1]",
                                 "--output", str(out)]) == 0
    record = json.loads(out.read_text())
    assert [(r["form"], r["name"]) for r in record["results"]] == [("vector", "v1"), ("lora", "l1")]
    assert record["results"][1]["hparams"]["steering_factors"] == [0.5, 1.0]
    assert set(record["results"][0]["per_m"]) == {"0", "1", "2"}
    assert set(record["best"]) == {"split/vector", "split/lora"}
    assert record["settings"]["seconds"] > 0  # the run finished (no stage 2 without a second instruction)


@pytest.mark.parametrize("entries, message", [
    ([], "non-empty JSON list"),
    ([{"objective": "split", "name": "x"}], "entry 0: needs 'objective', 'form' and 'name'"),
    ([{"objective": "split", "form": "vectr", "name": "x"}], "entry 0: unknown form 'vectr'"),
    ([{"objective": "split", "form": "vector", "name": "x", "point": [1]}], "'point' must be a mapping"),
    ([{"objective": "split", "form": "vector", "name": "x"}, {"objective": "split", "form": "vector", "name": "x"}],
     "entry 1: duplicate name 'x'"),
    ([{"objective": "nope", "form": "vector", "name": "x"}], "no hparams file"),
])
def test_bad_points_are_refused_naming_the_entry(tmp_path, entries, message):
    with pytest.raises(SystemExit, match=message):
        search_defaults.explicit_plan(_points(tmp_path, entries), Path("hparams/smollm2"))
