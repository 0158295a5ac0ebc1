import pandas as pd
import pytest

from easyedit_split.data.pairs import PolarityPair
from easyedit_split.metrics.concept import concept_onset, onset_lines, probe_pairs_for


def _samples():
    rows = [{"method": "unsteered", "form": "-", "multiplier": 0.0, "concept": 0.2, "perplexity": p} for p in (8, 10, 12)]

    def add(method, m, concept, ppl):
        rows.extend({"method": method, "form": "vector", "multiplier": m, "concept": c, "perplexity": p}
                    for c, p in zip(concept, ppl))

    add("good", 0.5, [0.3, 0.4, 0.3], [10, 11, 12])
    add("good", 1.0, [0.6, 0.7, 0.4], [12, 15, 30])  # mean 0.567, median 15 <= 20
    add("good", 2.0, [0.9, 0.9, 0.9], [30, 40, 50])  # median 40 > 20
    add("breaks", 1.0, [0.2, 0.3, 0.2], [25, 30, 35])
    add("breaks", 2.0, [0.8, 0.9, 0.7], [60, 70, 80])
    add("mute", 1.0, [0.1, 0.2, 0.1], [9, 10, 11])
    return rows


def test_concept_onset():
    table, onsets = concept_onset(_samples(), threshold=0.5, ppl_factor=2.0)
    by = {o.method: o for o in onsets}
    assert by["good"].ppl_bound == 20.0
    assert (by["good"].onset_m, by["good"].first_expressive_m, by["good"].first_broken_m) == (1.0, 1.0, 2.0)
    assert by["breaks"].onset_m is None and by["breaks"].first_expressive_m == 2.0 and by["breaks"].first_broken_m == 1.0
    assert by["mute"].onset_m is None and by["mute"].first_broken_m is None
    row = table.loc[(table["method"] == "good") & (table["multiplier"] == 1.0)].iloc[0]
    assert row["concept"] == pytest.approx(1.7 / 3) and row["perplexity_median"] == 15 and row["n"] == 3
    lines = onset_lines(table, onsets)
    assert "| good | vector | 1 | 1 | 2 |" in lines
    with pytest.raises(ValueError, match="no unsteered"):
        concept_onset([r for r in _samples() if r["method"] != "unsteered"])
    with pytest.raises(ValueError, match="lack columns"):
        concept_onset(pd.DataFrame(_samples()).drop(columns=["concept"]))


def test_probe_pairs_for_persona_statements():
    rows = []
    for i in range(8):
        yes = i % 2 == 0
        rows.append(PolarityPair(f"p{i}", f"Would you say: s{i}?", " Yes" if yes else " No", " No" if yes else " Yes",
                                 "x", meta={"statement": f"statement {i}"}))
    out = probe_pairs_for(rows)
    assert len(out) == 4
    assert out[0].positive == " statement 0" and out[0].negative == " statement 1"  # concept vs opposite statement
    free = [PolarityPair("a", "q", "a long positive answer", "a long negative one", "x")] * 4
    assert probe_pairs_for(free) == free
    with pytest.raises(ValueError, match="too few"):
        probe_pairs_for(rows[:3])
