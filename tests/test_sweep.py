import numpy as np
import pytest

from easyedit_split.cli.compare import parse_named
from easyedit_split.core.sites import Site
from easyedit_split.evaluation.sweep import read_table, sweep, write_table
from tests.test_core import random_update
from tests.test_scoring import make_pairs, reference_losses
from tests.tiny_models import tiny_model


@pytest.mark.parametrize("single", [True, False])
@pytest.mark.parametrize("use_cache", [True, False])
def test_batched_sweep_equals_one_multiplier_at_a_time(single, use_cache):
    model = tiny_model("llama")
    pairs = make_pairs(single, n=7)
    u = random_update(model, "lora", Site(2, "mlp_down"))
    grid = [-2.0, -0.5, 0.0, 1.0, 3.0]
    # batch_rows=4 forces rows of several multipliers and pairs to share passes and chunks to split
    df = sweep(model, None, pairs, [u], grid, batch_rows=4, pad_token_id=0, progress=False,
               use_prefix_cache=use_cache)
    assert len(df) == len(pairs) * len(grid)
    assert list(df["m"].unique()) == grid
    for m in grid:
        sp, sn, mp, mn = reference_losses(model, pairs, u, m)
        part = df[df["m"] == m].set_index("example_id").loc[[p.id for p in pairs]]
        np.testing.assert_allclose(part["L_p"], sp.numpy(), atol=1e-4)
        np.testing.assert_allclose(part["L_n"], sn.numpy(), atol=1e-4)
        np.testing.assert_allclose(part["L_p_mean"], mp.numpy(), atol=1e-4)
        np.testing.assert_allclose(part["L_n_mean"], mn.numpy(), atol=1e-4)
        np.testing.assert_allclose(part["pref_odds"], (sn - sp).numpy(), atol=2e-4)


def test_layer_sweep_moves_vectors_and_factory():
    model = tiny_model("llama")
    pairs = make_pairs(True, n=4)
    u = random_update(model, "vector", Site(1, "residual"))
    df = sweep(model, None, pairs, [u], [0.0, 2.0], layers=[1, 3], pad_token_id=0, progress=False)
    assert set(df["layer"]) == {1, 3}
    a = df[(df.layer == 1) & (df.m == 2.0)]["L_p"].to_numpy()
    b = df[(df.layer == 3) & (df.m == 2.0)]["L_p"].to_numpy()
    assert not np.allclose(a, b)
    # m = 0 does not depend on the layer
    np.testing.assert_allclose(df[(df.layer == 1) & (df.m == 0)]["L_p"], df[(df.layer == 3) & (df.m == 0)]["L_p"], atol=1e-5)
    lora = random_update(model, "lora", Site(1, "mlp_down"))
    with pytest.raises(ValueError, match="update_factory"):
        sweep(model, None, pairs, [lora], [0.0, 1.0], layers=[2], pad_token_id=0, progress=False)
    df2 = sweep(model, None, pairs, [lora], [0.0, 1.0], layers=[2], pad_token_id=0, progress=False,
                update_factory=lambda layer: [random_update(model, "lora", Site(layer, "mlp_down"))])
    assert set(df2["layer"]) == {2}


def test_table_roundtrip_atomic(tmp_path):
    model = tiny_model("llama")
    df = sweep(model, None, make_pairs(False, n=3), [random_update(model, "vector", Site(1))], [0.0, 1.0],
               pad_token_id=0, progress=False, method="x", output=tmp_path / "t.csv")
    back = read_table(tmp_path / "t.csv")
    assert list(back.columns) == list(df.columns)
    np.testing.assert_allclose(back["util_odds"], df["util_odds"])
    write_table(df, tmp_path / "t.parquet")
    assert len(read_table(tmp_path / "t.parquet")) == len(df)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ValueError, match=".csv or .parquet"):
        write_table(df, tmp_path / "t.txt")


def test_sweep_input_errors():
    model = tiny_model("llama")
    pairs = make_pairs(False, n=2)
    u = random_update(model, "vector", Site(1))
    with pytest.raises(ValueError, match="duplicate"):
        sweep(model, None, pairs, [u], [1.0, 1.0], pad_token_id=0, progress=False)
    with pytest.raises(ValueError, match="non-finite"):
        sweep(model, None, pairs, [u], [float("nan")], pad_token_id=0, progress=False)
    with pytest.raises(ValueError, match="no pairs"):
        sweep(model, None, [], [u], [1.0], pad_token_id=0, progress=False)


def test_named_update_parser():
    assert parse_named(["a=x.pt", "b = diffmean@3"]) == {"a": "x.pt", "b": "diffmean@3"}
    with pytest.raises(ValueError, match="NAME=PATH"):
        parse_named(["x.pt"])
    with pytest.raises(ValueError, match="twice"):
        parse_named(["a=x", "a=y"])


def test_evaluation_renders_prompts_as_the_update_was_trained(tmp_path):
    """A saved update's hparams (system prompt, chat template) decide how held-out prompts are rendered."""
    from easyedit_split.core.serialization import save_updates
    from easyedit_split.core.sites import Site
    from easyedit_split.data import PolarityPair
    from easyedit_split.evaluation import evaluate_preference_utility
    from easyedit_split.evaluation.sweep import sweep
    from tests.conftest import build_tiny_tokenizer
    from tests.test_core import random_update
    from tests.tiny_models import tiny_model

    model, tok = tiny_model("llama"), build_tiny_tokenizer()
    pairs = [PolarityPair(f"p{i}", q, "yes", "no", "t") for i, q in enumerate(["is the sky blue ?", "i like it"])]
    u = random_update(model, "vector", Site(1, "residual"))
    path = save_updates(tmp_path / "u.safetensors", [u], model=model, method="split",
                        hparams={"use_chat_template": True, "system_prompt": "answer : yes or no"})
    res = evaluate_preference_utility(model, tok, path, pairs, [-1.0, 0.0, 1.0], n_boot=10, progress=False)
    got = res.only.table.sort_values(["m", "example_id"])["L_p"].to_numpy()
    for sp, same in (("answer : yes or no", True), (None, False)):
        ref = sweep(model, tok, pairs, [u], [-1.0, 0.0, 1.0], encode_kwargs={"system_prompt": sp}, progress=False)
        ref_lp = ref.sort_values(["m", "example_id"])["L_p"].to_numpy()
        assert (abs(got - ref_lp).max() < 1e-5) == same
