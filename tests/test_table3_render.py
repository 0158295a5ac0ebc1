"""benchmarks/table3.py renders partial tables in both modes (its own options, or the shipped YAMLs
with a dial table) without running a model."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import table3


def _cell(acc_by_m: dict[str, float], util: float) -> dict:
    return {"accuracy": acc_by_m["1"], "util_odds": util,
            "per_m": {m: {"accuracy": a, "util_odds": util, "pref_odds": 0.0} for m, a in acc_by_m.items()}}


def test_render_with_shipped_yamls_adds_the_dial_table():
    cfg = {"layer": 15, "n_train": 160, "n_test": 100, "seed": 0, "epochs": 1, "multipliers": [0.0, 1.0, 2.0],
           "hparams_dir": "hparams/smollm2", "forms": {}, "shared": {}}
    cells = {"vector/unsteered": {"accuracy": 0.42, "util_odds": -3.68, "per_m": {"0": {"accuracy": 0.42}}},
             "lora/split": _cell({"0": 0.42, "1": 0.9, "2": 0.88}, 3.1)}
    text = table3.render(cells, cfg)
    assert "| LoRA | 42 / -3.68 | – | (not run) | (not run) | 90 / 3.10 |" in text
    assert "| lora/split | 42 | 90 | 88 |" in text
    assert "shipped YAMLs in hparams/smollm2" in text and "epoch(s)" not in text


def test_render_with_own_options_lists_them():
    cfg = {"layer": 15, "n_train": 160, "n_test": 100, "seed": 0, "epochs": 2, "multipliers": [1.0],
           "hparams_dir": None, "forms": {f: {"lr": 0.1} for f in table3.FORMS}, "shared": {"batch_size": 4}}
    text = table3.render({}, cfg)
    assert "2 epoch(s)" in text and '- LoRA: {"lr": 0.1}' in text and "the dial" not in text


def test_a_partial_run_resumes_only_with_the_same_settings(tmp_path):
    import json

    import pytest

    cfg = {"layer": 15, "n_train": 160, "multipliers": [0.0, 1.0], "hparams_dir": "hparams/smollm2"}
    out = tmp_path / "table3.json"
    assert table3.resumed_cells(out, cfg) == {}
    out.write_text(json.dumps({"config": cfg, "cells": {"vector/split": {"accuracy": 0.8}}}))
    assert table3.resumed_cells(out, cfg) == {"vector/split": {"accuracy": 0.8}}
    with pytest.raises(SystemExit, match="made with other settings"):
        table3.resumed_cells(out, {**cfg, "hparams_dir": None})
