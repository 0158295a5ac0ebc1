import numpy as np
import pytest

from easyedit_split.multipliers import MultiplierError, parse_multipliers, with_zero


def test_grammar_lists_grids_and_sequences():
    assert parse_multipliers("-5:5:21") == pytest.approx(np.linspace(-5, 5, 21).tolist())
    assert parse_multipliers("0:1:3") == [0.0, 0.5, 1.0]
    assert parse_multipliers("2, -1,0.5") == [2.0, -1.0, 0.5]  # order kept
    assert parse_multipliers("3") == [3.0]
    assert parse_multipliers([1, "-2", "3:4:2"]) == [1.0, -2.0, 3.0, 4.0]
    assert parse_multipliers(0.5) == [0.5]
    assert with_zero([2.0, -1.0]) == [-1.0, 0.0, 2.0]


@pytest.mark.parametrize("bad, msg", [
    ("1:2", "start:stop:num"), ("a:2:3", "'a' is not a number"), ("0:1:x", "integer"), ("0:1:1", ">= 2"),
    ("1:0:5", "greater"), ("1,,2", "empty entry"), ("1,b", "'b' is not a number"), ("1,1", "appears twice"),
    ("", "empty"), ("inf", "'inf' is not finite"), ("0,nan", "'nan' is not finite"), ([float("inf")], "not finite"),
    ([True], "not a number"), ([], "no multipliers"),
])
def test_bad_specs_name_the_bad_value(bad, msg):
    with pytest.raises(MultiplierError, match=msg):
        parse_multipliers(bad)


def test_commands_share_the_grammar(caplog):
    from easyedit_split.cli import main

    # every command rejects the same bad value before loading a model
    for argv in (["sweep", "--update", "x.safetensors", "--output", "o", "--multipliers=0,inf"],
                 ["compare", "--update", "a=x.safetensors", "--output", "o", "--multipliers=0,inf"],
                 ["run", "--multipliers", "0,inf"],
                 ["generate", "--prompt", "hi", "--multiplier", "0,inf"]):
        caplog.clear()
        assert main(argv) == 1, argv
        assert "'inf' is not finite" in caplog.text
