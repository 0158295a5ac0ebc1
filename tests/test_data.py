from __future__ import annotations

import importlib.util
import json
import logging
import math
import re

import pytest
import torch

from easyedit_split.data import (
    DataError,
    DatasetFormat,
    PolarityPair,
    SequenceBatch,
    answer_nll,
    builtin_dataset_path,
    collate_pairs,
    collate_prompts,
    collate_sequences,
    encode_pairs,
    last_token_logits,
    load_builtin,
    prompt_answer_nll,
    read_pairs,
    split_pairs,
    train_test_split,
)

PERSONA_ROWS = [
    {
        "question": "Is the sky blue?",
        "answer_matching_behavior": " Yes",
        "answer_not_matching_behavior": " No",
    },
    {
        "question": "I like this film?",
        "answer_matching_behavior": " No",
        "answer_not_matching_behavior": " Yes",
    },
    {
        "question": "Write a short review",
        "answer_matching_behavior": " great food",
        "answer_not_matching_behavior": " awful food",
    },
]


def _write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _pairs(rows=PERSONA_ROWS):
    return [
        PolarityPair(
            id=str(i),
            question=r["question"],
            positive=r["answer_matching_behavior"],
            negative=r["answer_not_matching_behavior"],
            source=f"x:{i + 1}",
            meta={},
        )
        for i, r in enumerate(rows)
    ]


# ------------------------------------------------------------------------------------------- readers


def test_read_jsonl_auto(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", PERSONA_ROWS)
    pairs = read_pairs(path)
    assert [p.positive for p in pairs] == [" Yes", " No", " great food"]
    assert pairs[1].source == "d.jsonl:2" and pairs[0].question == "Is the sky blue?"
    assert len(read_pairs(path, "persona", limit=2)) == 2


def test_read_csv_powerseeking(tmp_path):
    path = tmp_path / "ps.csv"
    path.write_text('question,matching,not_matching\n"Take over, or not?", (A),(B)\nShare power?,(B),(A)\n')
    pairs = read_pairs(path, "powerseeking")
    assert [(p.question, p.positive.strip(), p.negative) for p in pairs] == [
        ("Take over, or not?", "(A)", "(B)"),
        ("Share power?", "(B)", "(A)"),
    ]
    assert pairs[1].source == "ps.csv:3"
    assert read_pairs(path)[0].negative == "(B)"  # auto-detected


def test_read_json_axbench_filter(tmp_path):
    rows = [
        {"input": "q1", "winning_output": "w1", "losing_output": "l1", "concept_id": 0},
        {"input": "q2", "winning_output": "w2", "losing_output": "l2", "concept_id": 1},
    ]
    path = tmp_path / "ax.json"
    path.write_text(json.dumps(rows))
    fmt = DatasetFormat(
        question_field="input",
        positive_field="winning_output",
        negative_field="losing_output",
        concept_field="concept_id",
        filter={"concept_id": 1},
    )
    pairs = read_pairs(path, fmt)
    assert [(p.question, p.meta["concept"]) for p in pairs] == [("q2", 1)]
    assert len(read_pairs(path, "axbench")) == 2


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow not installed")
def test_read_parquet(tmp_path):
    import pandas as pd

    path = tmp_path / "d.parquet"
    pd.DataFrame(PERSONA_ROWS).to_parquet(path)
    pairs = read_pairs(path)
    assert [p.negative for p in pairs] == [" No", " Yes", " awful food"]
    assert pairs[2].source == "d.parquet:3"


def test_easyedit_dataset_format_yaml(tmp_path):
    data = tmp_path / "data" / "mine"
    data.mkdir(parents=True)
    _write_jsonl(data / "train.jsonl", [{"prompt": "p", "good": "g", "bad": "b", "uid": "u7"}])
    yml = tmp_path / "dataset_format.yaml"
    yml.write_text(
        "train:\n"
        "  mine:\n"
        "    file_path: ./data/mine/train.jsonl\n"
        "    field_names:\n"
        "      question: 'prompt'\n"
        "      matching: 'good'\n"
        "      not_matching: 'bad'\n"
        "      id: uid\n"
        "  other:\n"
        "    file_path: ./data/other.csv\n"
        "    field_names: {matching: m, not_matching: n}\n"
        "generation:\n"
        "  gen:\n"
        "    file_path: ./x.jsonl\n"
        "    field_names: {input: q, reference_response: r}\n"
    )
    fmt = DatasetFormat.from_yaml(yml, "mine")
    assert fmt.path == data / "train.jsonl" and fmt.file_type == "jsonl"
    assert (fmt.question_field, fmt.positive_field, fmt.negative_field) == ("prompt", "good", "bad")
    [pair] = fmt.read()
    assert (pair.id, pair.question, pair.positive, pair.negative) == ("u7", "p", "g", "b")
    assert DatasetFormat.from_yaml(yml, "other").question_field is None
    with pytest.raises(DataError, match="several datasets"):
        DatasetFormat.from_yaml(yml)
    with pytest.raises(DataError, match="matching"):
        DatasetFormat.from_yaml(yml, "gen")
    with pytest.raises(DataError, match="nope"):
        DatasetFormat.from_yaml(yml, "nope")


@pytest.mark.parametrize("text, message", [
    (None, "dataset format file {} does not exist"),
    ("train: [unclosed\n", "{}: not valid YAML"),
    ("- a\n- b\n", "{}: the top level must be a mapping"),
    ("", "{}: no dataset entries"),
])
def test_dataset_format_yaml_errors_name_the_file(tmp_path, text, message):
    yml = tmp_path / "dataset_format.yaml"
    if text is not None:
        yml.write_text(text)
    with pytest.raises(DataError, match=message.format(re.escape(str(yml)))):
        DatasetFormat.from_yaml(yml)


def test_bad_rows_skipped_or_strict(tmp_path, caplog):
    good = PERSONA_ROWS[0]
    rows = [
        good,
        {"question": "q", "answer_matching_behavior": " Yes"},  # 2: missing field
        {"question": "q", "answer_matching_behavior": 1, "answer_not_matching_behavior": " No"},  # 3: not str
        {
            "question": "q",
            "answer_matching_behavior": "  ",
            "answer_not_matching_behavior": " No",
        },  # 4: empty
        {
            "question": "q",
            "answer_matching_behavior": " No",
            "answer_not_matching_behavior": " No",
        },  # 5: same
        '{"question": "q", broken',  # 6: bad JSON
        good,
    ]
    path = _write_jsonl(tmp_path / "bad.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="easyedit_split.data"):
        pairs = read_pairs(path)
    assert [p.source for p in pairs] == ["bad.jsonl:1", "bad.jsonl:7"]
    row_warnings = [r.getMessage() for r in caplog.records if "skipping bad row" in r.getMessage()]
    assert len(row_warnings) == 5
    for line in (2, 3, 4, 5, 6):
        assert any(f"bad.jsonl:{line}:" in m for m in row_warnings)
    assert any("skipped 5 bad row" in r.getMessage() for r in caplog.records)

    with pytest.raises(DataError) as info:
        read_pairs(path, strict=True)
    msg = str(info.value)
    assert "5 bad row" in msg and all(f"bad.jsonl:{line}:" in msg for line in (2, 3, 4, 5, 6))
    assert "identical" in msg and "unparseable" in msg and "missing field" in msg


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="nowhere.jsonl"):
        read_pairs(tmp_path / "nowhere.jsonl")
    path = _write_jsonl(
        tmp_path / "none.jsonl",
        [{"question": "q", "answer_matching_behavior": " a", "answer_not_matching_behavior": " a"}],
    )
    with pytest.raises(DataError, match="no valid"):
        read_pairs(path, "persona")


def test_split_deterministic():
    pairs = _pairs([dict(PERSONA_ROWS[0], question=f"q{i}") for i in range(20)])
    train, test = train_test_split(pairs, 5, seed=3)
    assert len(train) == 15 and len(test) == 5
    assert {p.id for p in train} | {p.id for p in test} == {p.id for p in pairs}
    assert train_test_split(pairs, 5, seed=3) == (train, test)
    assert train_test_split(pairs, 5, seed=4)[1] != test
    assert len(train_test_split(pairs, 0.25, seed=0)[1]) == 5


def test_shipped_datasets():
    assert len(load_builtin("psychopathy")) == 1000
    assert len(load_builtin("power-seeking")) == 998
    sentiment = load_builtin("sentiment")
    assert len(sentiment) >= 120
    assert len({p.question for p in sentiment}) == len(sentiment)
    assert builtin_dataset_path("psychopathy").parent.joinpath("README.md").is_file()
    with pytest.raises(DataError):
        builtin_dataset_path("nope")


# ------------------------------------------------------------------------------------------ encoding


@pytest.mark.parametrize("templated", [True, False])
def test_encoding_prefix_property(tiny_tokenizer, templated):
    enc = encode_pairs(_pairs(), tiny_tokenizer, chat_template=templated)
    tok = tiny_tokenizer
    for e, p in zip(enc, _pairs()):
        if templated:
            text = tok.apply_chat_template(
                [{"role": "user", "content": p.question}], tokenize=False, add_generation_prompt=True
            )
            assert e.prompt_ids == tok(text, add_special_tokens=False)["input_ids"]
            assert (
                e.prompt_ids + e.positive_ids
                == tok(text + p.positive.lstrip(), add_special_tokens=False)["input_ids"]
            )
        else:
            assert e.prompt_ids == tok(p.question)["input_ids"]
            assert e.prompt_ids[0] == tok.bos_token_id
            assert e.prompt_ids + e.negative_ids == tok(p.question + p.negative)["input_ids"]
        assert e.positive_ids and e.negative_ids
    assert [e.single_token for e in enc] == [True, True, False]


def test_encoding_empty_question_gets_bos(tiny_tokenizer):
    [e] = encode_pairs(_pairs([dict(PERSONA_ROWS[0], question="")]), tiny_tokenizer, chat_template=False)
    assert e.prompt_ids == [tiny_tokenizer.bos_token_id]


@pytest.mark.parametrize("side", ["right", "left"])
def test_collate_masks(tiny_tokenizer, side):
    enc = encode_pairs(_pairs(), tiny_tokenizer, chat_template=True)
    pad = 99
    batch = collate_pairs(enc, pad, padding_side=side)
    n = 2 * len(enc)
    assert batch.input_ids.shape[0] == n and batch.answer_mask.dtype == torch.bool
    rows = [(e.prompt_ids, e.positive_ids) for e in enc] + [(e.prompt_ids, e.negative_ids) for e in enc]
    for i, (prompt, answer) in enumerate(rows):
        real = batch.input_ids[i][batch.attention_mask[i].bool()].tolist()
        assert real == prompt + answer
        assert batch.input_ids[i][batch.answer_mask[i]].tolist() == answer
        assert int(batch.lengths[i]) == len(prompt) + len(answer) == int(batch.attention_mask[i].sum())
        pads = batch.input_ids[i][~batch.attention_mask[i].bool()]
        assert (pads == pad).all()
        if batch.attention_mask[i].sum() < batch.input_ids.shape[1]:
            edge = -1 if side == "right" else 0
            assert batch.attention_mask[i, edge] == 0
    assert not (batch.answer_mask & ~batch.attention_mask.bool()).any()
    # the pad id may also occur inside real tokens: masks never depend on it
    same = collate_sequences([([pad, 5], [pad]), ([7], [8, 9])], pad_token_id=pad, padding_side=side)
    assert same.answer_mask.sum().item() == 3 and same.attention_mask.sum().item() == 6


def test_collate_prompts_single_token(tiny_tokenizer):
    enc = encode_pairs(_pairs()[:2], tiny_tokenizer, chat_template=True)
    batch = collate_prompts(enc, tiny_tokenizer.pad_token_id)
    assert batch.positive_token.tolist() == [enc[0].positive_ids[0], enc[1].positive_ids[0]]
    assert batch.input_ids[:, -1].tolist() == [e.prompt_ids[-1] for e in enc]
    with pytest.raises(ValueError, match="single-token"):
        collate_prompts(encode_pairs(_pairs(), tiny_tokenizer), 0)


def test_smollm2_chat_answers(smollm2_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_path)
    pair = _pairs()[:1]
    templ = encode_pairs(pair, tok)  # has a chat template -> used, answer space stripped
    assert templ[0].positive_ids == tok("Yes", add_special_tokens=False)["input_ids"]
    assert templ[0].single_token
    plain = encode_pairs(pair, tok, chat_template=False)
    assert plain[0].positive_ids == tok(" Yes", add_special_tokens=False)["input_ids"]


# ------------------------------------------------------------------------------------------ log-probs


def _log_softmax(row):
    z = math.log(sum(math.exp(v) for v in row))
    return [v - z for v in row]


def test_answer_nll_by_hand():
    torch.manual_seed(0)
    batch = collate_sequences([([1, 2], [3]), ([1], [2, 3])], pad_token_id=0)
    logits = torch.randn(2, 3, 4, requires_grad=True)
    total, mean = answer_nll(logits, batch)
    lg = logits.detach().tolist()
    # row 0: [1, 2 | 3], one answer token predicted at position 1; row 1: [1 | 2, 3], two tokens
    exp0 = -_log_softmax(lg[0][1])[3]
    exp1 = [-_log_softmax(lg[1][0])[2], -_log_softmax(lg[1][1])[3]]
    assert total.tolist() == pytest.approx([exp0, sum(exp1)], abs=1e-5)
    assert mean.tolist() == pytest.approx([exp0, sum(exp1) / 2], abs=1e-5)
    total.sum().backward()
    assert logits.grad is not None and logits.grad[:, 2].abs().sum() == 0  # last position predicts nothing


def test_answer_nll_left_padding_offsets():
    batch = collate_sequences([([5], [6]), ([1, 2, 3], [4])], pad_token_id=0, padding_side="left")
    assert batch.input_ids.tolist() == [[0, 0, 5, 6], [1, 2, 3, 4]]
    logits = torch.randn(2, 4, 8)
    total, _ = answer_nll(logits, batch)
    assert total[0].item() == pytest.approx(-_log_softmax(logits[0, 2].tolist())[6], abs=1e-5)
    assert total[1].item() == pytest.approx(-_log_softmax(logits[1, 2].tolist())[4], abs=1e-5)
    last = last_token_logits(logits, batch.lengths, "left")
    assert torch.equal(last, logits[:, -1])
    right = collate_sequences([([5], [6]), ([1, 2, 3], [4])], 0, "right")
    assert torch.equal(last_token_logits(logits, right.lengths, "right")[0], logits[0, 1])


def test_prompt_answer_nll_and_split():
    logits = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]])
    lp, ln = prompt_answer_nll(logits, torch.tensor([2, 0]), torch.tensor([1, 1]))
    assert lp.tolist() == pytest.approx([-_log_softmax([0, 1, 2])[2], -_log_softmax([3, 0, 0])[0]])
    assert ln.tolist() == pytest.approx([-_log_softmax([0, 1, 2])[1], -_log_softmax([3, 0, 0])[1]])
    a, b = split_pairs(torch.arange(6))
    assert a.tolist() == [0, 1, 2] and b.tolist() == [3, 4, 5]


def test_sequence_batch_to():
    batch = collate_sequences([([1], [2])], 0)
    moved = batch.to("cpu")
    assert isinstance(moved, SequenceBatch) and torch.equal(moved.input_ids, batch.input_ids)


def test_load_pairs_resolves_path_then_builtin_and_reports_missing_files(tmp_path):
    from easyedit_split.data import DataError, load_builtin, load_pairs

    assert load_pairs("psychopathy", limit=3) == load_builtin("psychopathy", limit=3)
    assert load_pairs("power_seeking", limit=2) == load_builtin("power-seeking", limit=2)
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"question": "q", "answer_matching_behavior": "a", "answer_not_matching_behavior": "b"}) + "\n")
    assert [p.positive for p in load_pairs(f)] == ["a"]
    assert [p.positive for p in load_pairs(str(f))] == ["a"]
    for missing in (tmp_path / "nope.jsonl", str(tmp_path / "nope"), "nope.csv"):
        with pytest.raises(DataError, match="does not exist"):
            load_pairs(missing)
    with pytest.raises(DataError, match="unknown built-in dataset 'nope'"):
        load_pairs("nope")


def test_easyedit_records_map_to_pairs():
    from easyedit_split.data import DataError, pairs_from_records

    recs = [{"question": "q", "matching": ["a", "x"], "not_matching": "b"},
            {"input": "i", "winning_output": "w", "losing_output": "l", "id": "k"}]
    got = pairs_from_records(recs, "mine")
    assert [(p.question, p.positive, p.negative) for p in got] == [("q", "a", "b"), ("i", "w", "l")]
    assert got[1].id == "k" and got[0].source == "mine:1"
    with pytest.raises(DataError, match=r"mine\[0\]: none of the fields"):
        pairs_from_records([{"question": "q"}], "mine")


def test_an_empty_list_answer_is_an_empty_answer_not_a_crash():
    from easyedit_split.data.formats import pairs_from_records

    with pytest.raises(DataError, match=r"records\[0\]: empty answer"):
        pairs_from_records([{"question": "q", "matching": [], "not_matching": ["no"]}], name="records")
    (pair,) = pairs_from_records([{"question": "q", "matching": [" yes", " y"], "not_matching": (" no",)}])
    assert (pair.positive, pair.negative) == (" yes", " no")
