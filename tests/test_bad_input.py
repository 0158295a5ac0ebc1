"""Bad input, class by class: each test asserts the exact behaviour (a named error, or the correct
result) and that no partial artefact is left behind."""

from __future__ import annotations

import csv
import importlib
import inspect
import json
import logging
import math
import pkgutil
import re
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import easyedit_split
from easyedit_split.base.hparams_io import HParamsError, coerce_value
from easyedit_split.cli import main
from easyedit_split.core.serialization import UpdateFileError, load_updates, save_updates
from easyedit_split.core.sites import Site
from easyedit_split.core.updates import VectorUpdate
from easyedit_split.data import DataError, read_pairs
from easyedit_split.errors import EasyEditSplitError
from easyedit_split.training.hparams import DiffMeanHyperParams, SplitHyperParams

# ------------------------------------------------------------------------------ 1. errors and the CLI


def _package_error_classes():
    out = []
    for info in pkgutil.walk_packages(easyedit_split.__path__, "easyedit_split."):
        try:
            mod = importlib.import_module(info.name)
        except ImportError:
            continue
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            # private classes (``_Stop`` …) are control flow inside one function, not errors
            if obj.__module__ == mod.__name__ and issubclass(obj, BaseException) and not obj.__name__.startswith("_"):
                out.append(obj)
    return out


def test_every_package_error_subclasses_the_base():
    classes = _package_error_classes()
    assert {c.__name__ for c in classes} >= {"HParamsError", "DataError", "UpdateFileError", "SiteError",
                                              "TrainingError", "MergeError", "AdapterError", "ModelLoadError",
                                              "ExportError", "JudgeError"}
    assert [c.__name__ for c in classes if not issubclass(c, EasyEditSplitError)] == []


def test_cli_bad_input_prints_error_and_exits_2(tmp_path, capsys):
    hp = tmp_path / "h.yaml"
    hp.write_text("alg_name: nonsense\nlayers: [1]\n")
    assert main(["train", "--hparams", str(hp)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "alg_name" in err and "nonsense" in err and "Traceback" not in err


def test_cli_override_that_is_not_yaml_is_a_clear_error(tmp_path, capsys):
    hp = tmp_path / "h.yaml"
    hp.write_text("alg_name: split\nlayers: [1]\n")
    assert main(["train", "--hparams", str(hp), "layers=[1"]) == 2
    err = capsys.readouterr().err
    assert "override 'layers=[1'" in err and "not valid YAML" in err


@pytest.mark.parametrize("argv", [
    ["sweep", "--update", "x", "--output", "o", "--threads", "-1"],
    ["sweep", "--update", "x", "--output", "o", "--n-pairs", "0"],
    ["export", "--update", "x", "--output", "o", "--multiplier", "inf"],
])
def test_cli_bad_numbers_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_cli_io_error_names_the_path(tmp_path, capsys, monkeypatch):
    from easyedit_split.cli import info

    def boom(args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "locked"))

    monkeypatch.setattr(info, "run", boom)
    assert main(["info"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Permission denied") and "locked" in err


def test_cli_lets_genuine_bugs_show(monkeypatch):
    from easyedit_split.cli import info

    def bug(args):
        return {}["missing"]

    monkeypatch.setattr(info, "run", bug)
    with pytest.raises(KeyError):
        main(["info"])


def test_set_threads_refuses_zero_and_negative():
    from easyedit_split.base.checks import set_threads
    from easyedit_split.errors import InputError

    with pytest.raises(InputError, match="threads"):
        set_threads(-1)


# ------------------------------------------------------------------------------ 2. data files


@pytest.mark.parametrize("question_col", ["prompt", "Question", " INPUT ", "question"])
def test_question_column_aliases_keep_the_prompts(tmp_path, question_col):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({question_col: "Is the sky blue?", "Matching": " Yes", "not_matching": " No"}) + "\n")
    (pair,) = read_pairs(f)
    assert (pair.question, pair.positive, pair.negative) == ("Is the sky blue?", " Yes", " No")


def test_spreadsheet_csv_with_bom_and_padded_headers(tmp_path):
    f = tmp_path / "export.csv"
    f.write_bytes("\ufeffQuestion , Answer_Matching_Behavior,answer_not_matching_behavior\r\n"
                  "Do you lie?, Yes, No\r\n".encode("utf-8"))
    (pair,) = read_pairs(f)
    assert pair.question == "Do you lie?" and pair.positive == " Yes" and pair.negative == " No"


def test_utf16_spreadsheet_text_is_read(tmp_path):
    f = tmp_path / "export.csv"
    f.write_bytes("question,matching,not_matching\nçà?,oui,non\n".encode("utf-16"))
    assert read_pairs(f)[0].question == "çà?"


def test_unmappable_columns_name_the_file_and_columns(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"text": "Is it?", "matching": "Yes", "not_matching": "No"}) + "\n")
    with pytest.raises(DataError) as exc:
        read_pairs(f)
    msg = str(exc.value)
    assert str(f) in msg and "'text'" in msg and "question" in msg and "prompt" in msg


def test_explicit_format_with_a_missing_column_names_it(tmp_path):
    from easyedit_split.data import DatasetFormat

    f = tmp_path / "d.csv"
    f.write_text("q,pos,neg\nA?,x,y\n")
    fmt = DatasetFormat(question_field="q", positive_field="pos", negative_field="negative_answer")
    with pytest.raises(DataError, match=r"negative column 'negative_answer'.*\['neg', 'pos', 'q'\]"):
        read_pairs(f, fmt)
    ok = DatasetFormat(question_field="Q", positive_field="POS ", negative_field="neg")
    assert read_pairs(f, ok)[0].positive == "x"


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_undecodable_row_is_skipped_with_file_and_line(tmp_path, suffix, caplog):
    f = tmp_path / f"d{suffix}"
    if suffix == ".jsonl":
        rows = [json.dumps({"question": q, "matching": "a", "not_matching": "b"}).encode() for q in ("one", "two")]
        bad = b'{"question": "caf\xe9", "matching": "a", "not_matching": "b"}'
        f.write_bytes(b"\n".join([rows[0], bad, rows[1]]) + b"\n")
    else:
        f.write_bytes(b"question,matching,not_matching\none,a,b\ncaf\xe9,a,b\ntwo,a,b\n")
    with caplog.at_level(logging.WARNING):
        pairs = read_pairs(f)
    assert [p.question for p in pairs] == ["one", "two"]
    assert f"{f}:" in caplog.text and "not UTF-8" in caplog.text
    with pytest.raises(DataError, match="not UTF-8"):
        read_pairs(f, strict=True)


_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30).filter(lambda s: s.strip())


def _case_variant(name: str, data) -> str:
    flips = data.draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    pad = data.draw(st.sampled_from(["", " ", "  "]))
    return pad + "".join(c.upper() if f else c for c, f in zip(name, flips)) + pad


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), rows=st.lists(st.tuples(_text, _text, _text), min_size=1, max_size=5),
       suffix=st.sampled_from([".jsonl", ".csv", ".json"]),
       names=st.sampled_from([("question", "matching", "not_matching"), ("prompt", "positive", "negative"),
                              ("input", "winning_output", "losing_output")]))
def test_readers_round_trip_any_text_and_header_spelling(tmp_path_factory, data, rows, suffix, names):
    rows = [r for r in rows if r[1] != r[2]]
    if not rows:
        return
    cols = [_case_variant(n, data) for n in names]
    f = tmp_path_factory.mktemp("h") / f"d{suffix}"
    if suffix == ".csv":
        with open(f, "w", encoding="utf-8-sig", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            w.writerows(rows)
    else:
        recs = [dict(zip(cols, r)) for r in rows]
        text = "\n".join(json.dumps(r) for r in recs) if suffix == ".jsonl" else json.dumps(recs)
        f.write_text(text, encoding="utf-8")
    pairs = read_pairs(f, strict=True)
    assert [(p.question, p.positive, p.negative) for p in pairs] == rows


# ------------------------------------------------------------------------------ 2b. context length


def _pairs(n: int, words: int):
    from easyedit_split.data import PolarityPair

    return [PolarityPair(id=f"p{i}", question=" ".join(["sky"] * words), positive="yes", negative="no",
                         source=f"d.jsonl:{i + 1}") for i in range(n)]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_pairs_longer_than_the_context_are_refused_before_training(arch, tiny_tokenizer, tmp_path):
    from tiny_models import tiny_model

    from easyedit_split.training import SplitHyperParams, Trainer

    model = tiny_model(arch)  # 128 positions
    hp = SplitHyperParams(layers=[1], n_epochs=1, use_chat_template=False)
    out = tmp_path / "u.safetensors"
    with pytest.raises(DataError, match=r"context of 128 tokens.*p1 \(d.jsonl:2: \d+ tokens\)"):
        Trainer(model, tiny_tokenizer, hp).train(_pairs(1, 10) + _pairs(2, 200)[1:], output_path=out, progress=False)
    assert not out.exists()


def test_pairs_longer_than_the_context_are_refused_before_a_sweep(tiny_tokenizer):
    from tiny_models import tiny_model

    from easyedit_split.core.sites import Site
    from easyedit_split.core.updates import VectorUpdate
    from easyedit_split.evaluation.sweep import sweep

    model = tiny_model("gpt2")
    u = VectorUpdate(Site(1, "residual"), 32, vector=torch_ones(32))
    with pytest.raises(DataError, match="context of 128"):
        sweep(model, tiny_tokenizer, _pairs(2, 300), [u], [0.0, 1.0], progress=False)


def test_long_validation_pairs_are_refused_before_any_sweep(tiny_tokenizer, monkeypatch):
    from tiny_models import tiny_model

    from easyedit_split.core.sites import Site
    from easyedit_split.core.updates import VectorUpdate
    from easyedit_split.evaluation import api

    model = tiny_model("gpt2")
    u = VectorUpdate(Site(1, "residual"), 32, vector=torch_ones(32))
    swept = []
    monkeypatch.setattr(api, "sweep", lambda *a, **k: swept.append(1))
    with pytest.raises(DataError, match="context of 128"):
        api.evaluate_preference_utility(model, tiny_tokenizer, [u], _pairs(2, 3), "-1:1:3",
                                        validation_pairs=_pairs(2, 300), progress=False)
    assert swept == []  # refused before the evaluation pairs were swept


def torch_ones(n):
    import torch

    return torch.ones(n)


# ------------------------------------------------------------------------------ 3. update files


@pytest.fixture(scope="module")
def llama():
    from tiny_models import tiny_model

    return tiny_model("llama")


def _vec(values, component="residual"):
    return VectorUpdate(Site(1, component), 32, vector=torch.as_tensor(values, dtype=torch.float32))


def _rewrite(path, mutate):
    """Rewrite a saved update file with mutated tensors/metadata (as a corruption or an old writer would)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    mutate(tensors, meta)
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_update_is_not_saved(tmp_path, bad):
    v = torch.ones(32)
    v[3] = bad
    out = tmp_path / "u.safetensors"
    with pytest.raises(UpdateFileError, match=r"update 0 \(vector at .*\) has 1 non-finite"):
        save_updates(out, [_vec(v)])
    assert list(tmp_path.iterdir()) == []


def test_zero_update_is_not_saved_nor_loaded(tmp_path, llama):
    with pytest.raises(UpdateFileError, match="every update is exactly zero"):
        save_updates(tmp_path / "z.safetensors", [_vec(torch.zeros(32))])
    out = save_updates(tmp_path / "u.safetensors", [_vec(torch.ones(32))])

    def zero(tensors, meta):
        tensors["u0.vector"] = torch.zeros(32)
        meta.pop("checksum")  # as a file from an older writer

    _rewrite(out, zero)
    with pytest.raises(UpdateFileError, match=f"{out}: every update is exactly zero"):
        load_updates(out, llama)


def test_non_finite_values_in_a_file_are_refused_at_load(tmp_path, llama):
    out = save_updates(tmp_path / "u.safetensors", [_vec(torch.ones(32))])

    def nan(tensors, meta):
        tensors["u0.vector"][0] = float("nan")
        meta.pop("checksum")

    _rewrite(out, nan)
    with pytest.raises(UpdateFileError, match=f"{out}: update 0 .* non-finite"):
        load_updates(out, llama)


def test_checksum_recorded_at_save_is_verified_at_load(tmp_path, llama):
    out = save_updates(tmp_path / "u.safetensors", [_vec(torch.ones(32))])
    assert load_updates(out, llama).updates[0].vector.sum().item() == 32.0

    def flip(tensors, meta):
        tensors["u0.vector"][5] = 2.0

    _rewrite(out, flip)
    with pytest.raises(UpdateFileError, match=f"{out}: the tensors or metadata do not match the checksum"):
        load_updates(out, llama)


@pytest.mark.parametrize("key", ["updates", "model"])
def test_malformed_metadata_names_the_file_and_key(tmp_path, llama, key):
    out = save_updates(tmp_path / "u.safetensors", [_vec(torch.ones(32))])
    _rewrite(out, lambda tensors, meta: meta.pop("checksum") and meta.update({key: "{not json"}))
    with pytest.raises(UpdateFileError, match=f"{out}: metadata '{key}' is not valid JSON"):
        load_updates(out, llama)
    out = save_updates(tmp_path / "u.safetensors", [_vec(torch.ones(32))])
    _rewrite(out, lambda tensors, meta: meta.pop("checksum") and meta.update({"updates": '[{"form": "vector"}]'}))
    with pytest.raises(UpdateFileError, match=f"{out}: update 0: metadata has no 'site'"):
        load_updates(out, llama)


def test_generation_refuses_a_non_finite_update_in_both_modes(llama, tiny_tokenizer):
    from easyedit_split.core.generation import generate

    v = torch.ones(32)
    v[0] = float("nan")
    for mode in ("hook", "merged"):
        with pytest.raises(UpdateFileError, match="non-finite"):
            generate(llama, tiny_tokenizer, ["is the sky blue ?"], [_vec(v)], 1.0, mode=mode, max_new_tokens=2,
                     progress=False)


def test_generation_refuses_a_non_finite_multiplier(llama, tiny_tokenizer):
    from easyedit_split.core.generation import generate
    from easyedit_split.errors import InputError

    with pytest.raises(InputError, match="finite"):
        generate(llama, tiny_tokenizer, ["is the sky blue ?"], [_vec(torch.ones(32))], float("nan"),
                 max_new_tokens=2, progress=False)


def test_pt_written_with_the_safetensors_keeps_the_site_and_detects_a_mixed_pair(tmp_path, llama):
    from easyedit_split.adapters.builders import from_easyedit_pt
    from easyedit_split.core.easyedit_layout import write_easyedit_pt

    u = _vec(torch.arange(32.0) + 1, component="attn_out")
    out = save_updates(tmp_path / "layer_1.safetensors", [u], model=llama, easyedit_pt=write_easyedit_pt)
    pt = tmp_path / "layer_1.pt"
    loaded = from_easyedit_pt(pt, llama)
    assert loaded.site.component == "attn_out" and torch.equal(loaded.vector, u.vector.detach())
    # a kill after the new .pt and before the new .safetensors: the .pt no longer matches
    torch.save(torch.ones(32), str(pt))
    with pytest.raises(UpdateFileError, match=f"{pt} does not match {out}"):
        from_easyedit_pt(pt, llama)


def test_peft_adapter_for_another_base_model_is_flagged(tmp_path, llama, caplog, monkeypatch):
    from peft import LoraConfig, get_peft_model
    from tiny_models import tiny_model

    pm = get_peft_model(tiny_model("llama"), LoraConfig(r=2, target_modules=["down_proj"], init_lora_weights=False))
    pm.save_pretrained(tmp_path / "adapter")
    cfg_path = tmp_path / "adapter" / "adapter_config.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "base_model_name_or_path": "acme/other-model"}))
    from easyedit_split.adapters.builders import from_peft

    monkeypatch.setattr(llama.config, "_name_or_path", "acme/tiny-llama")
    with caplog.at_level(logging.WARNING):
        from_peft(tmp_path / "adapter", llama)
    assert "made for the base model acme/other-model" in caplog.text and "acme/tiny-llama" in caplog.text
    caplog.clear()
    monkeypatch.setattr(llama.config, "_name_or_path", "/models/Other-Model")  # the same model, a local folder
    with caplog.at_level(logging.WARNING):
        from_peft(tmp_path / "adapter", llama)
    assert "made for the base model" not in caplog.text


# ------------------------------------------------------------------------------ 4. hyperparameters


@pytest.mark.parametrize("value", [-1, 0, None, -0.5])
def test_max_grad_norm_sentinels_turn_clipping_off(value):
    hp = SplitHyperParams.from_dict({"layers": [1], "max_grad_norm": value})
    assert hp.max_grad_norm is None  # never a negative norm (which would reverse the gradients)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("max_num_of_examples", -995, "'max_num_of_examples' must be >= 1, or null for all"),
    ("max_num_of_examples", 0, "'max_num_of_examples' must be >= 1, or null for all"),
    ("layers", [-1], "'layers' has \\[-1\\]"),
    ("layers", [2, 2], "'layers' lists a layer twice"),
    ("steering_factors", [0], "'steering_factors' is all zero"),
    ("steering_factors", [0.0, 0.0], "'steering_factors' is all zero"),
    ("steering_factors", [], "'steering_factors' must not be empty"),
    ("steering_factors", [1.0, ".nan"], "'steering_factors'\\[1\\]: must be a finite"),
    ("lr", 0, "'lr' must be > 0"),
    ("lr", "-1e-3", "'lr' must be > 0"),
    ("lr", "inf", "'lr'.*finite"),
    ("n_epochs", 0, "'n_epochs' must be >= 1"),
    ("batch_size", 0, "'batch_size' must be >= 1"),
    ("gradient_accumulation_steps", -2, "'gradient_accumulation_steps' must be >= 1"),
    ("pos_loss_weight", -1, "'pos_loss_weight' must be >= 0.*reverse"),
    ("dropout", 1.5, "'dropout' must be >= 0 and < 1"),
    ("test_size", -3, "'test_size'"),
    ("test_size", 2.5, "'test_size'"),
    ("seed", -1, "'seed' must be >= 0"),
    ("beta", 0, "'beta' must be > 0"),
])
def test_bad_training_hparams_name_the_file_and_key(tmp_path, key, value, message):
    f = tmp_path / "split.yaml"
    base = "" if key == "layers" else "layers: [1]\n"  # a key given twice is refused on its own
    f.write_text(f"alg_name: split\n{base}{key}: {json.dumps(value)}\n".replace('".nan"', ".nan"))
    with pytest.raises(HParamsError, match=f"{f}: key {message}"):
        SplitHyperParams.from_hparams(f)


def test_checks_apply_however_the_dataclass_is_built():
    with pytest.raises(HParamsError, match="'lr' must be > 0"):
        SplitHyperParams(lr=-0.1)
    with pytest.raises(HParamsError, match="'steering_factors' is all zero"):
        SplitHyperParams(steering_factors=[0.0])
    with pytest.raises(HParamsError, match="'lr' must be a finite number"):
        SplitHyperParams(lr=float("nan"))
    with pytest.raises(HParamsError, match="'layers' has"):
        DiffMeanHyperParams(layers=[-3])
    assert SplitHyperParams(max_grad_norm=-1).max_grad_norm is None


def test_max_num_of_examples_null_means_all():
    from easyedit_split.data import load_builtin
    from easyedit_split.training.trainer import select_pairs

    pairs = load_builtin("sentiment")
    hp = SplitHyperParams(layers=[1], max_num_of_examples=None)
    assert len(select_pairs(hp, pairs)) == len(pairs)
    assert len(select_pairs(SplitHyperParams(layers=[1], max_num_of_examples=5), pairs)) == 5


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=8), st.booleans(),
                 st.none()))
def test_coerce_float_accepts_exactly_finite_numbers(value):
    try:
        out = coerce_value(value, float, "k")
    except HParamsError as exc:
        assert str(exc).startswith("k: ")
        return
    assert isinstance(out, float) and math.isfinite(out)
    assert not isinstance(value, bool) and value is not None


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=4)))
def test_coerce_int_never_rounds(value):
    try:
        out = coerce_value(value, int, "k")
    except HParamsError:
        return
    assert isinstance(out, int) and not isinstance(out, bool) and out == value


_json_values = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=6),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                         max_size=2), max_leaves=6)
_TRAIN_KEYS = [f.name for f in __import__("dataclasses").fields(SplitHyperParams)]


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(_TRAIN_KEYS), value=_json_values)
def test_any_value_for_any_key_is_accepted_or_a_named_hparams_error(key, value):
    try:
        hp = SplitHyperParams.from_dict({"layers": [1], key: value}, source="f.yaml")
    except HParamsError as exc:
        assert str(exc).startswith("f.yaml: ")
        return
    for v in [getattr(hp, f) for f in _TRAIN_KEYS]:
        for item in (v if isinstance(v, list) else [v]):
            assert not (isinstance(item, float) and not math.isfinite(item))
    assert hp.lr > 0 and hp.n_epochs >= 1 and hp.batch_size >= 1 and all(layer >= 0 for layer in hp.layers)
    assert hp.max_grad_norm is None or hp.max_grad_norm > 0




# ------------------------------------------------------------------------------ 5. trainer resume


def _train(tmp, data, **kw):
    from easyedit_split.training.trainer import Trainer
    from tests.test_training import TOK, hp
    from tests.tiny_models import tiny_model

    return Trainer(tiny_model("llama"), TOK, hp(checkpoint_every=2, n_epochs=3)).train(
        data, progress=False, checkpoint_dir=tmp, **kw)


def test_resume_notices_changed_training_data(tmp_path):
    from easyedit_split.data.encoding import EncodedPair
    from easyedit_split.training.trainer import TrainingError
    from tests.test_training import pairs

    data = pairs()
    _train(tmp_path, data, max_steps=3)
    flipped = [EncodedPair(e.id, e.prompt_ids, e.negative_ids, e.positive_ids) if i == 0 else e
               for i, e in enumerate(data)]  # same path, same count, one polarity flipped
    with pytest.raises(TrainingError, match="different hparams or training data.*Delete"):
        _train(tmp_path, flipped, resume=True)


@pytest.mark.parametrize("damage", ["latest_json", "newest_checkpoint"])
def test_resume_falls_back_to_the_intact_older_checkpoint(tmp_path, damage, caplog):
    from tests.test_training import pairs

    data = pairs()
    full = _train(tmp_path / "full", data)
    _train(tmp_path / "ck", data, max_steps=5)  # checkpoints at steps 2 and 4
    ck = tmp_path / "ck"
    if damage == "latest_json":
        (ck / "latest.json").write_text('{"file": "step_0000')  # torn write by another tool
    else:
        newest = ck / "step_000004.safetensors"
        newest.write_bytes(newest.read_bytes()[:100])  # truncated
    with caplog.at_level(logging.WARNING):
        resumed = _train(ck, data, resume=True)
    assert "resume:" in caplog.text
    assert resumed.loss_history == full.loss_history
    for (n, a), (_, b) in zip(full.updates[0].named_parameters(), resumed.updates[0].named_parameters()):
        assert torch.equal(a, b), n


def test_resume_with_no_intact_checkpoint_is_a_clear_error(tmp_path):
    from easyedit_split.training.trainer import TrainingError
    from tests.test_training import pairs

    data = pairs()
    _train(tmp_path, data, max_steps=5)
    for f in tmp_path.glob("step_*.safetensors"):
        f.write_bytes(b"\0" * 10)
    with pytest.raises(TrainingError, match=r"no intact checkpoint in .*step_000004.safetensors.*run without --resume"):
        _train(tmp_path, data, resume=True)


# ------------------------------------------------------------------------------ 6. outputs


def _no_model(monkeypatch):
    from easyedit_split.core import models

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(models, "load_model", refuse)


@pytest.mark.parametrize("command", ["sweep", "generate", "run"])
def test_unwritable_output_fails_before_any_work(tmp_path, monkeypatch, capsys, command):
    _no_model(monkeypatch)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    bad = str(blocker / "sub" / ("out.jsonl" if command == "generate" else "out"))
    update = tmp_path / "u.safetensors"
    update.write_bytes(b"x")  # exists: the spec is checked first, then the output, both before the model
    argv = {"sweep": ["sweep", "--update", str(update), "--output", bad],
            "generate": ["generate", "--prompt", "hi", "--output", bad],
            "run": ["run", "--output", bad]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot be written" in err and str(blocker) in err


def test_train_refuses_to_replace_layer_files_without_overwrite(tmp_path, monkeypatch, capsys):
    import easyedit_split.easyedit.entry_points as api

    monkeypatch.setattr(api, "generate", lambda *a, **k: pytest.fail("trained before checking the output"))
    hp = tmp_path / "h.yaml"
    hp.write_text(f"alg_name: split\nlayers: [1]\nsteer_vector_output_dir: {tmp_path / 'out'}\n")
    folder = tmp_path / "out" / "split_vector"
    folder.mkdir(parents=True)
    (folder / "layer_1.safetensors").write_text("previous run")
    assert main(["train", "--hparams", str(hp)]) == 2
    err = capsys.readouterr().err
    assert "layer_1.safetensors already exist" in err and "--overwrite" in err and "overwrite=True" not in err
    assert (folder / "layer_1.safetensors").read_text() == "previous run"


def test_a_second_writer_of_the_same_output_fails_clearly(tmp_path):
    import subprocess
    import sys

    from easyedit_split.base.atomic_io import output_lock
    from easyedit_split.errors import OutputError

    holder = subprocess.Popen(
        [sys.executable, "-c", ("import sys, time; from easyedit_split.base.atomic_io import output_lock\n"
                                f"with output_lock({str(tmp_path)!r}):\n    print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=f"being written by another easyedit-split process \\(pid {holder.pid}\\)"), \
                output_lock(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
    with output_lock(tmp_path):  # released when the holder died
        pass


def test_compare_names_writing_the_same_table_are_refused(tmp_path, llama, tiny_tokenizer):
    from easyedit_split.errors import OutputError
    from easyedit_split.evaluation.api import evaluate_preference_utility

    u = _vec(torch.ones(32))
    with pytest.raises(OutputError, match="'a b' and 'a_b' would both write"):
        evaluate_preference_utility(llama, tiny_tokenizer, {"a b": u, "a_b": u}, _pairs(2, 2), [0.0, 1.0],
                                    output_dir=tmp_path / "cmp", progress=False)
    assert not list((tmp_path / "cmp").glob("sweep_*"))


def test_tmp_litter_of_a_killed_writer_is_cleaned_on_the_next_write(tmp_path):
    from easyedit_split.base.atomic_io import atomic_write_json

    dead = tmp_path / ".r.json.999999999.abc.tmp"  # no such process
    dead.write_text("half")
    alive = tmp_path / f".r.json.{__import__('os').getpid()}.def.tmp"  # a write in progress (this process)
    alive.write_text("half")
    atomic_write_json(tmp_path / "r.json", {"a": 1})
    assert not dead.exists() and alive.exists()
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}


# ------------------------------------------------------------------------------ 7. nothing lost


def _strict_json(text):
    def refuse(name):
        raise AssertionError(f"{name} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_nan_is_never_written_into_json(tmp_path):
    from easyedit_split.base.atomic_io import JsonlAppender, atomic_write_json

    atomic_write_json(tmp_path / "s.json", {"r2": float("nan"), "rows": [1.0, float("inf")]})
    assert _strict_json((tmp_path / "s.json").read_text()) == {"r2": None, "rows": [1.0, None],
                                                               "non_finite": ["r2", "rows[1]"]}
    JsonlAppender(tmp_path / "g.jsonl").append([{"multiplier": float("nan")}])
    assert _strict_json((tmp_path / "g.jsonl").read_text()) == {"multiplier": None, "non_finite": ["multiplier"]}


def test_an_interrupted_sweep_keeps_its_rows_and_a_rerun_resumes(tmp_path, llama, tiny_tokenizer, monkeypatch):
    from easyedit_split.core.scoring import PairScorer
    from easyedit_split.evaluation.sweep import sweep

    pairs, u, grid = _pairs(4, 2), _vec(torch.ones(32) * 0.1), [0.0, 1.0]
    full = sweep(llama, tiny_tokenizer, pairs, [u], grid, batch_rows=2, progress=False)
    partial = tmp_path / "p.jsonl"
    real_prepare, calls = PairScorer.prepare, {"n": 0}

    def prepare_then_die(self, chunk):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_prepare(self, chunk)

    monkeypatch.setattr(PairScorer, "prepare", prepare_then_die)
    with pytest.raises(KeyboardInterrupt):
        sweep(llama, tiny_tokenizer, pairs, [u], grid, batch_rows=2, progress=False, partial=partial)
    assert len(partial.read_text().splitlines()) == 4  # two chunks of one pair × two multipliers
    calls["n"] = -100
    resumed = sweep(llama, tiny_tokenizer, pairs, [u], grid, batch_rows=2, progress=False, partial=partial)
    assert calls["n"] == -98  # only the two chunks not done were computed
    assert (resumed[["example_id", "m"]].values == full[["example_id", "m"]].values).all()
    assert abs(resumed["L_p"] - full["L_p"]).max() < 1e-9


def test_a_nan_in_a_sweep_stops_it_at_once(llama, tiny_tokenizer, tmp_path):
    from easyedit_split.errors import NonFiniteResultError
    from easyedit_split.evaluation.sweep import sweep

    u = _vec(torch.full((32,), 10.0))
    with pytest.raises(NonFiniteResultError, match=r"m=3e\+38.*kept in .*p.jsonl.*narrow the multiplier grid"):
        sweep(llama, tiny_tokenizer, _pairs(3, 2), [u], [0.0, 3e38], batch_rows=2, progress=False,
              partial=tmp_path / "p.jsonl")
    nan = _vec(torch.full((32,), float("nan")))
    with pytest.raises(UpdateFileError, match="non-finite"):
        sweep(llama, tiny_tokenizer, _pairs(3, 2), [nan], [0.0, 1.0], progress=False)


def test_generate_keeps_finished_batches_and_a_rerun_completes(tmp_path, tiny_tokenizer, monkeypatch):
    from easyedit_split.core import generation
    from tests.test_generation import _saved_tiny

    _saved_tiny(tmp_path, tiny_tokenizer)
    argv = ["generate", "--model", str(tmp_path / "model"), "--update", str(tmp_path / "u.safetensors"),
            "--prompt", "is the sky blue ?", "--prompt", "i like it", "--prompt", "write a review",
            "--multiplier", "0", "2", "--batch-size", "2", "--max-new-tokens", "3"]
    assert main([*argv, "--output", str(tmp_path / "full.jsonl")]) == 0
    real, batches = generation.generate, {"n": 0}

    def dies_after_one_batch(*a, on_batch=None, **k):
        def wrapped(gens):
            on_batch(gens)
            batches["n"] += 1
            raise KeyboardInterrupt

        return real(*a, on_batch=wrapped, **k)

    monkeypatch.setattr(generation, "generate", dies_after_one_batch)
    out = tmp_path / "out.jsonl"
    assert main([*argv, "--output", str(out)]) == 130
    assert not out.exists() and len(Path(f"{out}.partial").read_text().splitlines()) == 2
    monkeypatch.setattr(generation, "generate", real)
    assert main([*argv, "--output", str(out)]) == 0
    assert not Path(f"{out}.partial").exists()
    got = [_strict_json(line) for line in out.read_text().splitlines()]
    want = [_strict_json(line) for line in (tmp_path / "full.jsonl").read_text().splitlines()]
    assert [(r["prompt"], r["multiplier"], r["text"]) for r in got] == [(r["prompt"], r["multiplier"], r["text"])
                                                                         for r in want]


# ------------------------------------------------------------------------------ 8. the judge


@pytest.mark.parametrize("failure", ["remote_disconnected", "incomplete_read", "reset"])
def test_judge_retries_a_connection_closed_without_reply(monkeypatch, failure):
    import http.client

    from easyedit_split.metrics.judge import ChatClient, JudgeConfig

    errors = {"remote_disconnected": http.client.RemoteDisconnected("Remote end closed connection without response"),
              "incomplete_read": http.client.IncompleteRead(b"{"), "reset": ConnectionResetError(104, "reset")}
    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-test")
    client = ChatClient(JudgeConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="TEST_JUDGE_KEY",
                                    max_retries=2, backoff=0.0))
    calls = {"n": 0}

    def post(payload):
        calls["n"] += 1
        if calls["n"] == 1:
            raise errors[failure]
        return json.dumps({"choices": [{"message": {"content": "Rating: [[2]]"}}]}).encode()

    monkeypatch.setattr(client, "_post", post)
    assert client.complete([{"role": "user", "content": "x"}]) == "Rating: [[2]]"
    assert calls["n"] == 2


# ---------------------------------------------------------------- 9. held-out pairs and missing data paths

_WORDS = ("film", "food", "pizza", "place", "street", "review", "sky", "elm")


def _pairs_file(tmp_path, n=24):
    """``n`` distinct pairs in tiny-vocabulary words, as a JSONL data file."""
    rows = [{"question": f"is the {_WORDS[i % 8]} {_WORDS[i // 8]} great ?", "matching": "yes", "not_matching": "no"}
            for i in range(n)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _split_args(data, **kw):
    return Namespace(**{"data": str(data), "n_pairs": 6, "n_train": 0, "seed": 0, "update": "u", **kw})


def test_sweep_never_holds_out_a_pair_the_update_was_trained_on(tmp_path, llama, tiny_tokenizer, monkeypatch, caplog):
    from easyedit_split.adapters.artefacts import recorded_training_pairs
    from easyedit_split.cli.common import load_data
    from easyedit_split.data import load_pairs, pair_digests, train_test_split
    from easyedit_split.training.api import train_layers
    from easyedit_split.training.trainer import select_pairs

    data = _pairs_file(tmp_path)
    hp = SplitHyperParams.from_dict({"alg_name": "split", "layers": [1], "n_epochs": 1, "seed": 1, "test_size": 6,
                                     "use_chat_template": False, "steer_train_dataset": str(data)})
    res = train_layers(hp, None, llama, tiny_tokenizer, output_dir=tmp_path / "u", progress=False)
    pairs = load_pairs(data)
    trained = set(pair_digests(select_pairs(hp, pairs)))
    assert len(trained) == 18
    # the file records its training pairs, through the .safetensors, the EasyEdit .pt and the folder
    for spec in (res.layers[0].path, res.layers[0].easyedit_path, tmp_path / "u"):
        assert recorded_training_pairs(spec) == trained
    # without the record, the default seed 0 would hold out training pairs of the seed-1 update
    _, naive = train_test_split(pairs, 6, seed=0)
    assert set(pair_digests(naive)) & trained
    # with it, the held-out pairs are exactly the update's own held-out part, whatever --seed says
    for seed in (0, 1, 7):
        _, test, _ = load_data(_split_args(data, seed=seed), False, {"": trained})
        assert not set(pair_digests(test)) & trained
        assert set(pair_digests(test)) == set(pair_digests(pairs)) - trained
    with pytest.raises(EasyEditSplitError, match=r"exceed the 6 pairs of .*d.jsonl left after leaving out the 18 "
                                                 r"pairs the update\(s\) were trained on"):
        load_data(_split_args(data, n_pairs=7), False, {"": trained})

    # end to end: `sweep` with the default seed sweeps only pairs the update was not trained on
    import pandas as pd

    from easyedit_split.core import models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: (llama, tiny_tokenizer))
    out = tmp_path / "sweep"
    assert main(["sweep", "--update", str(res.layers[0].path), "--data", str(data), "--n-pairs", "6",
                 "--multipliers=-1,0,1", "--fit-boot", "0", "--output", str(out)]) == 0
    swept = set(pd.read_csv(out / "sweep_split.csv")["example_id"].astype(str))
    by_id = {p.id: d for p, d in zip(pairs, pair_digests(pairs))}
    assert len(swept) == 6 and not {by_id[i] for i in swept} & trained
    assert "leaving out 18 of its 24 pairs that trained the update" in caplog.text


def test_an_update_without_recorded_pairs_is_checked_from_its_recorded_split(tmp_path):
    """Files saved before the digests were recorded: the split is redone from the saved seed, test_size,
    max_num_of_examples and dataset."""
    from easyedit_split.adapters.artefacts import recorded_training_pairs
    from easyedit_split.data import load_pairs, pair_digests
    from easyedit_split.training.trainer import select_pairs

    data = _pairs_file(tmp_path)
    hp = SplitHyperParams(layers=[1], seed=1, test_size=0.25, max_num_of_examples=10, steer_train_dataset=str(data))
    out = save_updates(tmp_path / "old.safetensors", [_vec(torch.ones(32))], hparams=hp.to_dict())
    expected = set(pair_digests(select_pairs(hp, load_pairs(data))))
    assert len(expected) == 10 and recorded_training_pairs(out) == expected
    # a file that records neither cannot be checked: None (the command says so in a warning)
    bare = save_updates(tmp_path / "bare.safetensors", [_vec(torch.ones(32))])
    assert recorded_training_pairs(bare) is None


@pytest.mark.parametrize("missing", ["no/such/dir/d.jsonl", "nosuch.csv"])
def test_a_missing_data_path_is_a_missing_file_everywhere(tmp_path, missing):
    from easyedit_split.cli.common import load_data
    from easyedit_split.easyedit.entry_points import dataset_to_pairs
    from easyedit_split.jobs.main_job import MainJobConfig, run_main_job

    path = str(tmp_path / missing) if "/" in missing else missing
    for call in (lambda: dataset_to_pairs(path), lambda: load_data(_split_args(path), False)):
        with pytest.raises(DataError, match=f"data file {re.escape(path)} does not exist"):
            call()
    with pytest.raises(DataError, match="does not exist"):
        run_main_job(MainJobConfig(dataset=path, output_dir=str(tmp_path / "run"), model=None))
    assert not (tmp_path / "run" / "summary.json").exists()


# ------------------------------------------------------------------------------ 10. text from files, shown safely

_CONTROL = st.characters(min_codepoint=0, max_codepoint=0x9F) | st.sampled_from(list("\u202e\u2066\u200f\ufeff\udc9b"))


@settings(max_examples=300, deadline=None)
@given(st.text(_CONTROL | st.characters(), max_size=40))
def test_printable_leaves_no_control_bidi_or_surrogate_character(text):
    from easyedit_split.base.safe_text import printable

    out = printable(text)
    assert all(c in "\n\t" or not (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F) for c in out)
    assert not set(out) & set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\ufeff")
    out.encode("utf-8")  # no lone surrogate left: always writable
    if all(c.isprintable() or c in "\n\t" for c in text) and "\\" not in text:
        assert out == text or any(0x200E <= ord(c) <= 0x206F or c == "\ufeff" for c in text)


def test_cli_escapes_text_from_files_in_errors_output_and_logs(tmp_path, capsys):
    hp = tmp_path / "h\x1b[31m\u202e\x00.yaml"  # a name that reaches the message unquoted
    assert main(["train", "--hparams", str(hp)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\u202e" not in err and "h\\x1b[31m\\u202e\\x00.yaml" in err


def test_an_error_message_is_capped_and_a_huge_value_is_cut(tmp_path, capsys):
    from easyedit_split.base.safe_text import MAX_MESSAGE_CHARS, shown

    assert len(shown("x" * 10**6)) < 200 and len(shown([[1] * 1000] * 1000)) < 400
    hp = tmp_path / "h.yaml"
    hp.write_text("alg_name: split\nlayers: [1]\nlr: " + json.dumps(["x" * 100] * 5000) + "\n")
    assert main(["train", "--hparams", str(hp)]) == 2
    err = capsys.readouterr().err
    assert "'lr'" in err and len(err) < 1000
    from easyedit_split.cli import _fail

    assert _fail("y" * (10 * MAX_MESSAGE_CHARS), 0) == 2
    assert len(capsys.readouterr().err) < MAX_MESSAGE_CHARS + 200


def test_overrides_may_follow_options(tmp_path, monkeypatch):
    from easyedit_split.cli import train

    seen = {}
    monkeypatch.setattr(train, "run", lambda args: seen.setdefault("o", args.overrides) and 0)
    assert main(["train", "--hparams", "h.yaml", "lr=0.1", "--overwrite", "n_epochs=2", "layers=[3]"]) == 0
    assert seen["o"] == ["lr=0.1", "n_epochs=2", "layers=[3]"]
    with pytest.raises(SystemExit):
        main(["train", "--hparams", "h.yaml", "--overwrite", "--no-such-flag"])


# ------------------------------------------------------------------------------ 11. the YAML reader


@pytest.mark.parametrize(("text", "message"), [
    ("alg_name: split\nlr: 0.1\nlr: 5\n", "key 'lr' a second time \\(first on line 2\\)"),
    ("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)),
     "aliases expand to more than"),
    ("alg_name: [unclosed\n", "not valid YAML"),
    ("- just\n- a list\n", "top level must be a mapping"),
])
def test_yaml_reader_refuses_duplicates_bombs_and_junk_quickly(tmp_path, text, message):
    import time

    from easyedit_split.base.hparams_io import read_yaml_mapping

    f = tmp_path / "h.yaml"
    f.write_text(text)
    t0 = time.perf_counter()
    with pytest.raises(HParamsError, match=message) as exc:
        read_yaml_mapping(f)
    assert time.perf_counter() - t0 < 2 and str(f) in str(exc.value) and len(str(exc.value)) < 2000


def test_yaml_merge_keys_may_override_and_overrides_may_not_repeat():
    from easyedit_split.base.hparams_io import parse_overrides, safe_load

    assert safe_load("b: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\n")["d"] == {"x": 3, "y": 2}
    with pytest.raises(HParamsError, match="given twice"):
        parse_overrides(["lr=1", "lr=2"])


def test_hparams_that_are_not_utf8_or_not_a_file_name_the_file(tmp_path):
    from easyedit_split.base.hparams_io import read_yaml_mapping

    f = tmp_path / "h.yaml"
    f.write_bytes(b"alg_name: split\nsystem_prompt: caf\xe9\n")
    with pytest.raises(HParamsError, match=f"{f}:2: not UTF-8 text"):
        read_yaml_mapping(f)
    with pytest.raises(HParamsError, match="is a folder"):
        read_yaml_mapping(tmp_path)
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    with pytest.raises(HParamsError, match="loop.yaml"):
        read_yaml_mapping(loop)


# ------------------------------------------------------------------------------ 12. the atomic writer


@pytest.fixture
def umask_022():
    import os

    old = os.umask(0o022)
    yield
    os.umask(old)


def test_outputs_get_the_umask_mode_not_0600(tmp_path, umask_022):
    import stat

    from easyedit_split.base.atomic_io import atomic_dir, atomic_write_json
    from easyedit_split.core.easyedit_layout import write_easyedit_pt

    f = atomic_write_json(tmp_path / "r.json", {"a": 1})
    assert stat.S_IMODE(f.stat().st_mode) == 0o644
    out = save_updates(tmp_path / "layer_1.safetensors", [_vec(torch.ones(32))], easyedit_pt=write_easyedit_pt)
    assert {stat.S_IMODE(p.stat().st_mode) for p in (out, tmp_path / "layer_1.pt")} == {0o644}
    with atomic_dir(tmp_path / "export") as d:
        (d / "config.json").write_text("{}")
    assert stat.S_IMODE((tmp_path / "export").stat().st_mode) == 0o755


def test_a_full_disk_names_the_real_path_and_leaves_no_half_set(tmp_path, monkeypatch):
    import resource

    from easyedit_split.base.atomic_io import atomic_write_bytes
    from easyedit_split.core.easyedit_layout import write_easyedit_pt
    from easyedit_split.errors import OutputError

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))  # ``ulimit -f``: Python ignores SIGXFSZ
    try:
        with pytest.raises(OutputError, match=f"cannot write {tmp_path / 'big.bin'}: File too large.*ulimit -f"):
            atomic_write_bytes(tmp_path / "big.bin", b"x" * 10_000)
        big = VectorUpdate(Site(1, "residual"), 4096, vector=torch.ones(4096))
        with pytest.raises(OutputError, match=f"cannot write {tmp_path}"):
            save_updates(tmp_path / "layer_1.safetensors", [big], easyedit_pt=write_easyedit_pt)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary file, no staging folder, no orphan .pt

    # the .pt written and the .safetensors failing (ENOSPC): neither is kept
    import safetensors.torch

    def no_space(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save", no_space)
    with pytest.raises(OutputError, match="No space left on device.*disk is full"):
        save_updates(tmp_path / "layer_1.safetensors", [_vec(torch.ones(32))], easyedit_pt=write_easyedit_pt)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_the_folder_of_a_killed_export_is_removed_by_the_next_one(tmp_path):
    from easyedit_split.base.atomic_io import atomic_dir

    dead = tmp_path / ".model.999999999.abc.tmp"
    (dead / "model.safetensors").parent.mkdir()
    (dead / "model.safetensors").write_bytes(b"half")
    with atomic_dir(tmp_path / "model") as d:
        (d / "config.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# ------------------------------------------------------------------------------ 13. update files: metadata


def _saved(tmp_path, llama, **kw):
    from easyedit_split.core.easyedit_layout import write_easyedit_pt

    hp = SplitHyperParams(layers=[1], use_chat_template=False)
    return save_updates(tmp_path / "layer_1.safetensors", [_vec(torch.arange(32.0) / 10 + 0.1)], model=llama,
                        method="split", hparams=hp.to_dict(), easyedit_pt=write_easyedit_pt, **kw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_changed_byte_is_refused_or_changes_nothing(tmp_path_factory, llama, data):
    """The checksum covers the header's metadata too: a flipped byte never moves an update to another layer,
    site or rendering silently."""
    folder = tmp_path_factory.mktemp("flip")
    out = _saved(folder, llama)
    raw = bytearray(out.read_bytes())
    header_len = int.from_bytes(raw[:8], "little")
    where = data.draw(st.integers(8, 8 + header_len - 1) if data.draw(st.booleans()) else st.integers(0, len(raw) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[where]))
    original = load_updates(out, llama)
    raw[where] = new
    out.write_bytes(bytes(raw))
    try:
        got = load_updates(out, llama)
    except UpdateFileError as exc:
        assert str(out) in str(exc)
        return
    assert [u.config() for u in got.updates] == [u.config() for u in original.updates]
    assert torch.equal(got.updates[0].vector, original.updates[0].vector) and got.hparams == original.hparams


def _tamper(out, mutate):
    """Edit the metadata as a hand edit would, recomputing the checksum (so that the values' checks are tested)."""
    from easyedit_split.core.serialization import file_checksum

    def edit(tensors, meta):
        mutate(meta)
        meta["checksum"] = file_checksum(tensors, meta)

    _rewrite(out, edit)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda m: m.update(updates=m["updates"].replace('"layer": 1', '"layer": -1')), "site.layer must be a whole number >= 0"),
    (lambda m: m.update(updates=m["updates"].replace('"layer": 1', '"layer": 9')), "layer 9 is out of range: this model has"),
    (lambda m: m.update(hparams=m["hparams"].replace('"use_chat_template": false', '"use_chat_template": "maybe"')),
     "hparams.use_chat_template: expected true/false, got 'maybe'"),
    (lambda m: m.update(hparams=m["hparams"].replace('"seed": 42', '"seed": "x"')), "hparams.seed: expected an integer"),
    (lambda m: m.update(method="[1]"), None),
    (lambda m: m.update(model='"gpt"'), "metadata 'model' must be an object"),
    (lambda m: m.update(format_version="7"), "format_version '7' is not one this easyedit-split reads"),
])
def test_metadata_is_validated_like_hparams(tmp_path, llama, mutate, message):
    out = _saved(tmp_path, llama)
    _tamper(out, mutate)
    if message is None:  # a method name that is not one of ours is only a label
        load_updates(out, llama)
        return
    with pytest.raises(UpdateFileError, match=re.escape(message) if "(" not in message else message) as exc:
        load_updates(out, llama)
    assert str(out) in str(exc.value)


def test_a_negative_layer_is_never_a_site():
    from easyedit_split.core.sites import SiteError

    with pytest.raises(SiteError, match="layers count from 0"):
        Site(-1, "residual")


def test_a_diverged_update_is_refused_by_its_norm(tmp_path):
    with pytest.raises(UpdateFileError, match="norm of 'vector' overflows; training diverged"):
        save_updates(tmp_path / "u.safetensors", [_vec(torch.full((32,), 1e30))])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty \\(0 bytes\\)"),
    ("safetensors", "is a safetensors file named .pt; rename it to layer_1.safetensors"),
    (b"PK\x03\x04junk", "is not a readable EasyEdit .pt artefact"),
])
def test_unreadable_pt_files_say_what_they_are(tmp_path, llama, content, message):
    from safetensors.torch import save_file

    from easyedit_split.adapters.builders import AdapterError, from_easyedit_pt

    pt = tmp_path / "layer_1.pt"
    if content == "safetensors":
        save_file({"x": torch.ones(2)}, str(pt))
    else:
        pt.write_bytes(content)
    with pytest.raises(AdapterError, match=message) as exc:
        from_easyedit_pt(pt, llama)
    assert "weights_only=False" not in str(exc.value)


def test_a_plain_safetensors_checkpoint_or_a_training_checkpoint_is_not_an_update(tmp_path, llama):
    from safetensors.torch import save_file

    from easyedit_split.adapters.artefacts import ArtefactError, load_artefact
    from easyedit_split.adapters.builders import AdapterError

    foreign = tmp_path / "other.safetensors"
    save_file({"encoder.block.0.weight": torch.ones(2, 2)}, str(foreign))
    with pytest.raises(AdapterError, match="none of its 1 tensors .* is a parameter of this"):
        load_artefact(foreign, llama)
    _train(tmp_path / "ck", __import__("tests.test_training", fromlist=["pairs"]).pairs(), max_steps=2)
    with pytest.raises(ArtefactError, match="is a training checkpoint, not an update"):
        load_artefact(next((tmp_path / "ck").glob("step_*.safetensors")), llama)


def test_a_peft_adapter_whose_config_and_tensors_disagree_on_rank(tmp_path, llama):
    from peft import LoraConfig, get_peft_model
    from tiny_models import tiny_model

    from easyedit_split.adapters.builders import AdapterError, from_peft

    pm = get_peft_model(tiny_model("llama"), LoraConfig(r=2, target_modules=["down_proj"], init_lora_weights=False))
    pm.save_pretrained(tmp_path / "adapter")
    cfg_path = tmp_path / "adapter" / "adapter_config.json"
    assert from_peft(tmp_path / "adapter", llama)
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "r": 8}))
    with pytest.raises(AdapterError, match="has rank 2 tensors, but adapter_config.json says r=8"):
        from_peft(tmp_path / "adapter", llama)


# ------------------------------------------------------------------------------ 14. numbers, flags, outputs


@pytest.mark.parametrize("argv", [
    ["generate", "--prompt", "hi", "--do-sample", "--seed", "1" * 25],
    ["generate", "--prompt", "hi", "--do-sample", "--seed", "-1"],
    ["generate", "--prompt", "hi", "--do-sample", "--temperature", "0"],
    ["generate", "--prompt", "hi", "--do-sample", "--top-p", "1.5"],
    ["sweep", "--update", "x", "--output", "o", "--seed", "4294967296"],
    ["run", "--seed", "-1"],
])
def test_numbers_out_of_range_are_refused_by_the_parser(argv, capsys, monkeypatch):
    _no_model(monkeypatch)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and "Traceback" not in capsys.readouterr().err


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.from_regex(r"-?[0-9.e+-]{1,12}:-?[0-9.e+-]{1,12}:[0-9]{1,30}", fullmatch=True),
                 st.builds(lambda a, b, n: f"{a!r}:{b!r}:{n}", st.floats(), st.floats(), st.integers(-5, 10**30)),
                 st.text(max_size=20)))
def test_any_multiplier_text_is_a_grid_or_a_named_error(text):
    from easyedit_split.base.multipliers import MultiplierError, parse_multipliers

    try:
        values = parse_multipliers(text, what="--multipliers")
    except MultiplierError as exc:
        assert str(exc).startswith("--multipliers")
        return
    assert values and all(math.isfinite(v) for v in values) and len(set(values)) == len(values)


def test_a_lora_rank_larger_than_the_site_is_refused_before_allocating(llama, tiny_tokenizer):
    from easyedit_split.training.trainer import Trainer

    with pytest.raises(HParamsError, match="'low_rank_dimension' must be .*<= 65536"):
        SplitHyperParams(layers=[1], intervention_method="lora", low_rank_dimension=100_000_000)
    hp = SplitHyperParams(layers=[1], intervention_method="lora", low_rank_dimension=4096)
    with pytest.raises(HParamsError, match="'low_rank_dimension' is 4096, but layer 1 mlp_down is 48→32"):
        Trainer(llama, tiny_tokenizer, hp)


def test_the_python_api_refuses_sampling_at_temperature_zero(llama, tiny_tokenizer):
    from easyedit_split.core.generation import generate
    from easyedit_split.errors import InputError

    with pytest.raises(InputError, match="temperature must be a finite number > 0"):
        generate(llama, tiny_tokenizer, ["hi"], [], 0.0, do_sample=True, temperature=0.0, progress=False)
    with pytest.raises(InputError, match="seed"):
        generate(llama, tiny_tokenizer, ["hi"], [], 0.0, do_sample=True, seed=-1, progress=False)


@pytest.mark.parametrize(("argv", "flag"), [
    (["sweep", "--update", "{u}", "--layer", "3", "--output", "{o}"], "--layer"),
    (["sweep", "--update", "{u}", "--module-path", "model.layers.1.mlp", "--output", "{o}"], "--module-path"),
    (["sweep", "--update", "{u}", "--dose-accuracy", "0.8", "--output", "{o}"], "--dose-accuracy"),
    (["sweep", "--update", "{u}", "--reference", "x", "--output", "{o}"], "--reference"),
    (["sweep", "--update", "{u}", "--target-pref", "1", "--target-accuracy", "0.8", "--output", "{o}"],
     "--target-accuracy"),
    (["export", "--update", "{u}", "--layer", "3", "--multiplier", "1", "--output", "{o}"], "--layer"),
    (["generate", "--update", "{u}", "--prompt", "hi", "--temperature", "0.5"], "--temperature"),
    (["generate", "--update", "{u}", "--prompt", "hi", "--mode", "merged", "--positions", "prompt"], "--positions"),
    (["generate", "--prompt", "hi", "--multiplier", "2"], "--multiplier"),
    (["run", "--dose-accuracy", "0.8"], "--dose-accuracy"),
])
def test_a_flag_that_does_nothing_is_refused(tmp_path, monkeypatch, capsys, argv, flag):
    _no_model(monkeypatch)
    u = tmp_path / "u.safetensors"
    u.write_bytes(b"x")
    argv = [a.format(u=u, o=tmp_path / "out") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flag} does nothing here: it applies only") and "leave it out" in err


@pytest.mark.parametrize(("spec", "message"), [
    ("diffmean@abc", "is not diffmean@LAYER or diffmean@LAYER:component"),
    ("diffmean@-1", "is not diffmean@LAYER"),
    ("nosuch.safetensors", "update path nosuch.safetensors does not exist"),
    ("notes.txt", "unknown update file type '.txt'"),
])
def test_a_bad_update_spec_is_named_before_the_model(tmp_path, monkeypatch, capsys, spec, message):
    _no_model(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    for argv in (["sweep", "--update", spec, "--output", "o"], ["compare", "--update", f"a={spec}", "--output", "o"]):
        assert main(argv) == 2
        assert message in capsys.readouterr().err


def test_every_command_refuses_to_replace_earlier_results_without_overwrite(tmp_path, monkeypatch, capsys):
    _no_model(monkeypatch)
    u = tmp_path / "u.safetensors"
    u.write_bytes(b"x")
    for name in ("sweep", "run", "report"):
        (tmp_path / name).mkdir()
    (tmp_path / "sweep" / "report.md").write_text("earlier")
    (tmp_path / "run" / "summary.md").write_text("earlier")
    (tmp_path / "report" / "results.json").write_text("{}")
    (tmp_path / "export").mkdir()
    (tmp_path / "g.jsonl").write_text("earlier")
    vectors = tmp_path / "vectors" / "m"
    vectors.mkdir(parents=True)
    for argv in (["sweep", "--update", str(u), "--output", str(tmp_path / "sweep")],
                 ["compare", "--update", f"a={u}", "--output", str(tmp_path / "sweep")],
                 ["run", "--output", str(tmp_path / "run")],
                 ["generate", "--prompt", "hi", "--output", str(tmp_path / "g.jsonl")],
                 ["export", "--update", str(u), "--multiplier", "1", "--output", str(tmp_path / "export")],
                 ["easyedit", "report", str(vectors), "--output", str(tmp_path / "report")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "--overwrite" in err and "Traceback" not in err, (argv, err)
    assert (tmp_path / "sweep" / "report.md").read_text() == "earlier"


def test_run_checks_its_sizes_against_the_data_before_the_model(tmp_path, monkeypatch):
    from easyedit_split.errors import InputError
    from easyedit_split.jobs.main_job import MainJobConfig, run_main_job

    _no_model(monkeypatch)
    data = _pairs_file(tmp_path, 30)
    for kw, message in (({"n_train": 100}, "exceed the 30"), ({"n_eval": 50, "n_test": 10, "n_train": 5, "n_val": 0}, "--n-eval 50"),
                        ({"seed": 2**40}, "seed")):
        with pytest.raises(InputError, match=message):
            run_main_job(MainJobConfig(dataset=str(data), output_dir=str(tmp_path / "run"), **kw))


def test_repeated_pairs_never_end_up_both_trained_and_held_out(tmp_path, caplog):
    from easyedit_split.cli.common import load_data
    from easyedit_split.data import pair_digests

    rows = [{"question": f"is {w} great ?", "matching": "yes", "not_matching": "no"} for w in _WORDS] * 3
    data = tmp_path / "dup.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with caplog.at_level(logging.WARNING):
        train, test, val = load_data(_split_args(data, n_pairs=3, n_train=4, n_val=1), False)
    assert not set(pair_digests(test)) & set(pair_digests(train + val))
    assert "16 repeated pair(s)" in caplog.text


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.mkdir(), "is a folder; give the data file inside it"),
    (lambda p: p.symlink_to(p), "symbolic link that points back to itself"),
    (lambda p: p.write_bytes("question,matching,not_matching\nq,a,b\n".encode("utf-16-le")), "UTF-16 .*without a byte"),
    (lambda p: p.write_text('{"question": "q", "matching": "a"}'), "a JSON data file holds a list of records"),
    (lambda p: p.write_text('[1, 2]'), "holds no record with named fields \\(the first is a int\\)"),
])
def test_data_paths_that_are_not_data_files_say_what_they_are(tmp_path, make, message):
    from easyedit_split.data import load_pairs

    path = tmp_path / "d.json"
    make(path)
    with pytest.raises(DataError, match=message):
        load_pairs(str(path))


def test_training_that_exploded_is_warned_about_and_recorded(tmp_path, caplog):
    from easyedit_split.training.trainer import Trainer
    from tests.test_training import TOK, hp, pairs
    from tests.tiny_models import tiny_model

    with caplog.at_level(logging.WARNING):
        res = Trainer(tiny_model("llama"), TOK, hp(lr=1e6, n_epochs=1)).train(
            pairs(), output_path=tmp_path / "u.safetensors", progress=False)
    health = load_updates(tmp_path / "u.safetensors").extra["training_health"]
    assert health["warnings"] and "the update exploded" in health["warnings"][0]
    assert "exploded" in caplog.text and res.extra["training_health"] == health
    with pytest.raises(UpdateFileError, match="overflows; training diverged"):  # lr 1e30: never saved
        Trainer(tiny_model("llama"), TOK, hp(lr=1e30, n_epochs=1)).train(
            pairs(), output_path=tmp_path / "v.safetensors", progress=False)
    assert not (tmp_path / "v.safetensors").exists()


def test_generate_does_not_reuse_completions_of_a_replaced_update(tmp_path, tiny_tokenizer, monkeypatch):
    from easyedit_split.core import generation
    from tests.test_generation import _saved_tiny

    _saved_tiny(tmp_path, tiny_tokenizer)
    out, upd = tmp_path / "out.jsonl", tmp_path / "u.safetensors"
    argv = ["generate", "--model", str(tmp_path / "model"), "--update", str(upd), "--prompt", "is the sky blue ?",
            "--prompt", "i like it", "--multiplier", "4", "--batch-size", "1", "--max-new-tokens", "3",
            "--output", str(out)]
    real = generation.generate

    def dies_after_one_batch(*a, on_batch=None, **k):
        def wrapped(gens):
            on_batch(gens)
            raise KeyboardInterrupt

        return real(*a, on_batch=wrapped, **k)

    monkeypatch.setattr(generation, "generate", dies_after_one_batch)
    assert main(argv) == 130 and Path(f"{out}.partial").exists()
    bundle = load_updates(upd)
    save_updates(upd, [_vec(-bundle.updates[0].vector.detach() * 5)], model=None)  # another update, same path
    monkeypatch.setattr(generation, "generate", real)
    assert main(argv) == 0
    fresh = tmp_path / "fresh.jsonl"
    assert main([*argv[:-1], str(fresh)]) == 0
    assert out.read_text() == fresh.read_text()  # nothing of the old update's completions


def test_enable_into_a_folder_python_does_not_read_says_so(tmp_path, capsys, caplog):
    with caplog.at_level(logging.WARNING):
        assert main(["easyedit", "enable", "--site-dir", str(tmp_path / "nowhere")]) == 0
    assert "is not a folder this Python" in caplog.text and "site.addsitedir" in caplog.text
    assert "not read by this Python" in capsys.readouterr().out


# ------------------------------------------------------------------------------ round three audit (benchmarks/audit_bad_input.py)


def test_the_package_raises_no_bare_builtin_errors():
    """Bad input to any function raises a package error (InputError is a ValueError, InputTypeError a
    TypeError too), never a bare ValueError/TypeError that the CLI would show as a traceback."""
    import ast

    root = Path(easyedit_split.__file__).parent
    bare = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name) \
                    and node.exc.func.id in ("ValueError", "TypeError"):
                bare.append(f"{path.relative_to(root)}:{node.lineno}")
    assert bare == []


def _tiny_pair(i=0, pos=" yes", neg=" no"):
    from easyedit_split.data.pairs import PolarityPair

    return PolarityPair(f"p{i}", f"is the sky blue {i} ?", pos, neg, f"t:{i}")


@pytest.mark.parametrize("call", [
    lambda m: easyedit_split.load_artefact(123, m),
    lambda m: easyedit_split.load_artefact(None, m),
    lambda m: easyedit_split.train_test_split([_tiny_pair()], 0.5, -1),
    lambda m: easyedit_split.save_updates("/tmp/x.safetensors", ["vector"]),
    lambda m: easyedit_split.save_updates("/tmp/x.safetensors", "vector"),
    lambda m: easyedit_split.apply_updates(m, _vec(torch.ones(32)), positions="sometimes").__enter__(),
])
def test_api_calls_with_bad_arguments_raise_package_errors(llama, call):
    with pytest.raises(EasyEditSplitError):
        call(llama)


def test_an_update_is_saved_only_under_a_safetensors_name(tmp_path):
    with pytest.raises(UpdateFileError, match=r"\.safetensors"):
        save_updates(tmp_path / "u.pt", [_vec(torch.ones(32))])
    assert list(tmp_path.iterdir()) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=st.floats(allow_nan=True, allow_infinity=True, width=32), merged=st.booleans())
def test_any_multiplier_is_a_finite_steer_or_a_clear_error(llama, m, merged):
    from easyedit_split.core.apply import apply_updates, merged_updates
    from easyedit_split.errors import InputError

    ids = torch.tensor([[1, 5, 7]])
    with torch.no_grad():
        before = llama(ids).logits
    ctx = merged_updates(llama, _vec(torch.ones(32)), m) if merged else apply_updates(llama, _vec(torch.ones(32)), m)
    if math.isfinite(m):
        with ctx, torch.no_grad():
            llama(ids)
    else:
        with pytest.raises(InputError, match="not finite"), ctx:
            pass
    with torch.no_grad():
        assert torch.equal(llama(ids).logits, before)  # never left steered


@pytest.mark.parametrize("pairs, error", [
    ("is the sky blue ?", "list of PolarityPair"),
    (["is the sky blue ?", " yes"], "pair 0 is a str"),
    ([("q", " yes", " no")], "pair 0 is a tuple"),
    ([{"question": "q"}], "pair 0 is a dict"),
])
def test_pairs_that_are_not_pairs_are_refused_where_they_enter(pairs, error):
    from easyedit_split.data.pairs import check_pairs
    from easyedit_split.errors import InputTypeError
    from easyedit_split.training.trainer import select_pairs

    with pytest.raises(InputTypeError, match=error):
        check_pairs(pairs, "x")
    with pytest.raises(InputTypeError, match=error):
        select_pairs(SplitHyperParams(), pairs)


def test_python_pairs_with_empty_or_identical_answers(caplog):
    from easyedit_split.data.pairs import check_pairs
    from easyedit_split.errors import InputError

    with pytest.raises(InputError, match="empty negative answer"):
        check_pairs([_tiny_pair(neg="  ")], "x")
    with caplog.at_level(logging.WARNING):
        assert len(check_pairs([_tiny_pair(0), _tiny_pair(1, neg=" yes")], "training pairs")) == 2
    assert "identical positive and negative answers (t:1)" in caplog.text


_INT_KEYS = ["batch_size", "n_epochs", "gradient_accumulation_steps", "seed", "low_rank_dimension"]


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from(_INT_KEYS), value=st.one_of(st.text(max_size=5), st.lists(st.integers(), max_size=2),
                                                        st.floats(allow_nan=False).filter(lambda f: not f.is_integer())))
def test_hparams_types_are_checked_in_the_constructor_and_on_assignment(key, value):
    with pytest.raises(HParamsError, match=key):
        SplitHyperParams(**{key: value})
    hp = SplitHyperParams()
    with pytest.raises(HParamsError, match=key):
        setattr(hp, key, value)


def test_hparams_constructor_layers_text_and_paths():
    with pytest.raises(HParamsError, match="layers"):
        SplitHyperParams(layers="12")
    hp = SplitHyperParams(steer_vector_output_dir=Path("out"))
    assert hp.steer_vector_output_dir == "out"


def test_update_metadata_is_strict_json(tmp_path):
    from easyedit_split.core.serialization import read_metadata
    from easyedit_split.errors import InputTypeError

    path = save_updates(tmp_path / "u.safetensors", [_vec(torch.ones(32))], extra={"score": float("nan")})
    extra = json.loads(read_metadata(path)["extra"])  # plain json: no NaN token
    assert extra["score"] is None and extra["non_finite"] == ["score"]
    with pytest.raises(InputTypeError, match="'hparams' holds a object"):
        save_updates(tmp_path / "v.safetensors", [_vec(torch.ones(32))], hparams={"when": object()})
    assert not (tmp_path / "v.safetensors").exists()


@pytest.fixture()
def saved_tiny(tmp_path, tiny_tokenizer):
    from tiny_models import tiny_model

    model = tiny_model("llama")
    model.save_pretrained(tmp_path / "m")
    tiny_tokenizer.save_pretrained(tmp_path / "m")
    upd = tmp_path / "v" / "u.safetensors"
    upd.parent.mkdir()
    save_updates(upd, [_vec(torch.ones(32))], model=model)
    return tmp_path / "m", upd


def test_no_output_replaces_an_input_even_with_overwrite(tmp_path, saved_tiny, capsys):
    model, upd = saved_tiny
    before = sorted(p.name for p in model.iterdir())
    export = ["export", "--update", str(upd), "--multiplier", "1", "--overwrite"]
    assert main([*export, "--model", str(model), "--output", str(model)]) == 2
    assert "would destroy it" in capsys.readouterr().err
    assert main([*export, "--model", str(model), "--output", str(upd.parent)]) == 2
    assert upd.exists() and sorted(p.name for p in model.iterdir()) == before
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "is it ?"}) + "\n")
    assert main(["generate", "--model", str(model), "--prompts-file", str(prompts), "--output", str(prompts),
                 "--overwrite", "--max-new-tokens", "2"]) == 2
    assert json.loads(prompts.read_text()) == {"prompt": "is it ?"}


def test_export_overwrite_replaces_only_an_earlier_export(tmp_path, saved_tiny, capsys):
    model, upd = saved_tiny
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    argv = ["export", "--model", str(model), "--update", str(upd), "--multiplier", "1", "--output", str(mine),
            "--overwrite"]
    assert main(argv) == 2
    assert "not an earlier export" in capsys.readouterr().err and (mine / "thesis.tex").exists()
    (mine / "thesis.tex").unlink()
    assert main(argv) == 0 and main(argv) == 0  # an empty folder, then the earlier export


@pytest.mark.parametrize("option", [["--delta=-1"], ["--target-accuracy", "1.5"], ["--max-util-drop=-0.5"],
                                    ["--dose", "accuracy", "--dose-accuracy", "0"]])
def test_evaluation_option_ranges_are_checked_by_the_parser(option, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--update", "x", "--output", "o", *option])
    assert exc.value.code == 2 and option[-1].split("=")[0].lstrip("-") in capsys.readouterr().err


def test_a_grid_of_only_zero_is_refused_before_the_model(tmp_path, capsys):
    assert main(["sweep", "--model", str(tmp_path / "nope"), "--update", "diffmean@1", "--multipliers", "0",
                 "--output", str(tmp_path / "o")]) == 2
    assert "holds only 0" in capsys.readouterr().err


def test_a_tokenizer_of_another_model_is_refused(tmp_path, tiny_tokenizer):
    import transformers
    from tiny_models import tiny_config

    from easyedit_split.core.models import ModelLoadError, load_model

    cfg = tiny_config("llama")
    cfg.vocab_size = 16  # the tiny tokenizer has more tokens than this embedding has rows
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path / "m")
    tiny_tokenizer.save_pretrained(tmp_path / "m")
    with pytest.raises(ModelLoadError, match="tokenizer belongs to another model"):
        load_model(str(tmp_path / "m"))


def test_text_that_was_not_utf8_is_written_not_crashed_on(tmp_path):
    from easyedit_split.base.atomic_io import JsonlAppender, atomic_write_json

    odd = "caf\udce9 \ud800"  # a file name's undecodable byte, a lone surrogate from a JSON escape
    atomic_write_json(tmp_path / "r.json", {"id": odd})
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8")) == {"id": odd}
    JsonlAppender(tmp_path / "p.jsonl").append([{"id": odd}])
    assert json.loads((tmp_path / "p.jsonl").read_text(encoding="utf-8")) == {"id": odd}


def test_every_layers_site_is_checked_before_the_first_is_trained(tmp_path, capsys, tiny_tokenizer):
    from tiny_models import tiny_model

    tiny_model("llama").save_pretrained(tmp_path / "m")
    tiny_tokenizer.save_pretrained(tmp_path / "m")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"question": f"is it {i} ?", "matching": " yes", "not_matching": " no"}) + "\n"
                            for i in range(6)))
    hp = tmp_path / "h.yaml"
    hp.write_text(f"alg_name: split\nlayers: [1, 2]\nn_epochs: 1\nmodel_name_or_path: {tmp_path / 'm'}\n"
                  f"intervention_module_path: model.layers.1.mlp.down_proj\n")
    assert main(["train", "--hparams", str(hp), "--data", str(data), "--output", str(tmp_path / "out"),
                 "--no-progress"]) == 2
    assert "layer 2" in capsys.readouterr().err
    assert not list((tmp_path / "out").rglob("layer_*"))


def test_empty_hparams_file_names_it(tmp_path, capsys):
    (tmp_path / "e.yaml").write_text("# nothing yet\n")
    assert main(["train", "--hparams", str(tmp_path / "e.yaml")]) == 2
    assert "e.yaml: the hyperparameter file is empty" in capsys.readouterr().err


def test_truncated_model_weights_are_named(tmp_path, capsys, saved_tiny):
    model, _ = saved_tiny
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    assert main(["info", "--model", str(model)]) == 2
    assert "model.safetensors are damaged or incomplete" in capsys.readouterr().err


def test_site_dir_that_is_a_file_and_unknown_scaffold_method(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["easyedit", "status", "--site-dir", str(tmp_path / "f")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["easyedit", "scaffold", "--method", "magic"]) == 2
    assert "--method magic: unknown method" in capsys.readouterr().err


def test_progress_bars_redraw_in_place_but_their_text_is_escaped(capsys):
    from tqdm import tqdm

    from easyedit_split.cli import _safe_output

    with _safe_output():
        for _ in tqdm(range(2), desc="\x1b[31mred", mininterval=0):
            pass
    err = capsys.readouterr().err
    assert "\r" in err and "\\x0d" not in err and "\x1b[31m" not in err and "\\x1b[31mred" in err


def test_a_refused_resume_says_what_changed(tmp_path):
    from tiny_models import tiny_model

    from easyedit_split.training.trainer import Trainer, TrainingError
    from tests.test_training import TOK, hp, pairs

    model, data, ckpt = tiny_model("llama"), pairs(), tmp_path / "ckpt"
    Trainer(model, TOK, hp(checkpoint_every=1, n_epochs=1)).train(data, checkpoint_dir=ckpt, progress=False)
    with pytest.raises(TrainingError, match=r"lr 0\.\d+ -> 0\.5"):
        Trainer(model, TOK, hp(checkpoint_every=1, n_epochs=1, lr=0.5)).train(data, checkpoint_dir=ckpt, resume=True,
                                                                               progress=False)
    with pytest.raises(TrainingError, match=r"the training data \(\d+ -> \d+ pairs\)"):
        Trainer(model, TOK, hp(checkpoint_every=1, n_epochs=1)).train(data[:-1], checkpoint_dir=ckpt, resume=True,
                                                                      progress=False)


def test_one_swept_pair_gives_fits_without_bootstrap_intervals(caplog):
    import pandas as pd

    from easyedit_split.evaluation.api import fit_summary

    m = [-1.0, 0.0, 1.0]
    summary = pd.DataFrame({"m": m, "pref": [-1.0, 0.0, 1.0], "util": [-0.5, 0.0, -0.5]})
    table = pd.DataFrame({"example_id": ["a"] * 3, "m": m, "pref_odds": [-1.0, 0.0, 1.0], "util_odds": [-0.5, 0.0, -0.5]})
    with caplog.at_level(logging.WARNING):
        fits = fit_summary(summary, "x", table, n_boot=5)
    assert fits and "need at least 2 pairs" in caplog.text


def test_a_data_file_name_that_is_not_utf8_gives_printable_pair_labels(tmp_path):
    import os

    import pandas as pd

    path = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.jsonl"))
    path.write_text(json.dumps({"question": "is it ?", "matching": " yes", "not_matching": " no"}) + "\n")
    (pair,) = read_pairs(path)
    assert pair.id == "caf\\udce9-1" and pair.source == "caf\\udce9.jsonl:1"
    pd.DataFrame({"example_id": [pair.id]}).to_csv(tmp_path / "t.csv")  # tables take them
