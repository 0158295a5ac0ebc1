import itertools
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from easyedit_split.base.multipliers import MAX_GRID_POINTS, MultiplierError, parse_multipliers, with_zero
from easyedit_split.errors import EasyEditSplitError


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


def test_commands_share_the_grammar(capsys, monkeypatch):
    from easyedit_split.cli import main
    from easyedit_split.core import models

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the multipliers were checked")

    monkeypatch.setattr(models, "load_model", no_model)
    # every command rejects the same bad value, as bad input (exit 2), before loading a model
    for argv in (["sweep", "--update", "x.safetensors", "--output", "o", "--multipliers=0,inf"],
                 ["compare", "--update", "a=x.safetensors", "--output", "o", "--multipliers=0,inf"],
                 ["run", "--multipliers", "0,inf"],
                 ["generate", "--prompt", "hi", "--update", "x.safetensors", "--multiplier", "0,inf"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: --") and "'inf' is not finite" in err and "Traceback" not in err, argv


def test_multiplier_error_is_a_package_error():
    assert issubclass(MultiplierError, EasyEditSplitError) and issubclass(MultiplierError, ValueError)


# ----------------------------------------------------------------------------------- property-based

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=8, unique=True))
def test_a_comma_list_round_trips(values):
    text = ",".join(repr(v) for v in values)
    assert parse_multipliers(text) == values  # every value exactly, in the order given
    assert parse_multipliers(values) == values
    assert parse_multipliers([repr(v) for v in values]) == values


@settings(max_examples=200, deadline=None)
@given(st.floats(-1e6, 1e6), st.floats(1e-3, 1e6), st.integers(2, 200))
def test_a_grid_has_num_finite_increasing_values_from_start_to_stop(start, width, num):
    stop = start + width
    grid = parse_multipliers(f"{start!r}:{stop!r}:{num}")
    assert len(grid) == num and all(math.isfinite(v) for v in grid)
    assert grid[0] == start and grid[-1] == stop
    assert all(a < b for a, b in itertools.pairwise(grid))
    noise = 1e-9 * width + 1e-15 * (abs(start) + abs(stop))  # rounding to a billionth of the step + float error
    assert grid == pytest.approx(np.linspace(start, stop, num).tolist(), abs=noise)
    # a grid written back as a list gives the same values
    assert parse_multipliers(",".join(repr(v) for v in grid)) == grid


bad_token = st.sampled_from(["nan", "NaN", "inf", "-inf", "+inf", "Infinity", "1e400", "-1e999"])


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, max_size=4), bad_token, st.lists(finite, max_size=4))
def test_any_non_finite_value_is_named(before, bad, after):
    text = ",".join([*map(repr, before), bad, *map(repr, after)])
    with pytest.raises(MultiplierError, match=re.escape(f"{bad!r} is not finite")):
        parse_multipliers(text, what="--multipliers")
    with pytest.raises(MultiplierError, match="not finite"):
        parse_multipliers([*before, float(bad), *after])
    with pytest.raises(MultiplierError, match="not finite"):
        parse_multipliers(f"{bad}:1:3" if not bad.startswith("-") else f"0:{bad.lstrip('-')}:3")


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(alphabet="0123456789-+.,:eEinfatyNI _", max_size=24), st.text(max_size=12)))
def test_any_string_parses_to_finite_distinct_values_or_the_named_error(text):
    try:
        values = parse_multipliers(text, what="--multipliers")
    except MultiplierError as exc:
        assert str(exc).startswith("--multipliers")  # names the option (and the bad value)
        return
    assert values and all(math.isfinite(v) for v in values)
    assert len(set(values)) == len(values)
    assert len(values) <= MAX_GRID_POINTS + text.count(",")


@pytest.mark.parametrize("bad, msg", [
    ("0:1:100001", f"<= {MAX_GRID_POINTS}"), ("-1e308:1e308:3", "too large"), (None, "not a number, a string"),
    (10 ** 400, "too large"),
])
def test_edge_specs_are_named_errors(bad, msg):
    with pytest.raises(MultiplierError, match=msg):
        parse_multipliers(bad)
