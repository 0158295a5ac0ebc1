"""EasyEdit's ``preference_pairs`` with ``steering_prompt_type``: the steered_add / steered_sub rows built from
the data's ``<type>_steered_input`` / ``<type>_steered_output`` fields, compared with upstream's own
``make_preference_data_module`` (steer/trainer/utils/data_utils.py)."""

import json
import logging

import pytest
import torch

from easyedit_split.base.hparams_io import HParamsError
from easyedit_split.core.serialization import load_updates
from easyedit_split.data.formats import DataError, pairs_from_records, read_pairs
from easyedit_split.training.hparams import SplitHyperParams
from easyedit_split.training.preference_pairs import PREFERENCE_PAIRS, slots_of, variants_of
from easyedit_split.training.trainer import Trainer, encode_examples, sample_rows
from tests.easyedit_checkout import require_steering, steer_on_path
from tests.tiny_models import tiny_model

ITEMS = [
    {"question": "is the sky blue ?", "matching": " yes", "not_matching": " no",
     "blend_in_steered_input": "i hate the sky : is the sky blue ?", "blend_in_steered_output": " no no",
     "prepend_steered_input": "answer : is the sky blue ?", "prepend_steered_output": " no"},
    {"question": "i like this film ?", "matching": " yes it was great", "not_matching": " no it was awful",
     "blend_in_steered_input": "i like this awful film ?", "blend_in_steered_output": " it was awful",
     "prepend_steered_input": "write a review : i like this film ?", "prepend_steered_output": " awful"},
    {"question": "write a short review of the pizza place on elm street :", "matching": " great food",
     "not_matching": " awful food", "blend_in_steered_input": "write a short awful review of the pizza place :",
     "blend_in_steered_output": " awful pizza", "prepend_steered_input": "hate it : write a review :",
     "prepend_steered_output": " awful place"},
]
ALL_PAIRS = ["orig_add", "orig_sub", "steered_add", "steered_sub"]


def _hp(**kw):
    base = {"layers": [1], "lr": 0.05, "n_epochs": 1, "batch_size": 2, "gradient_accumulation_steps": 1,
            "neg_loss_weight": 0.5, "margin_penalty_weight": 4.0, "steering_factors": [1.0, 2.0], "seed": 3,
            "use_chat_template": False, "preference_pairs": ALL_PAIRS, "steering_prompt_type": "blend_in"}
    base.update(kw)
    return SplitHyperParams.from_dict(base)


def _plugin_rows(hp, tokenizer, items=ITEMS):
    """``{pair: [(winning ids, losing ids, labels of each, sign of m)]}`` as the trainer builds them."""
    examples = encode_examples(hp, pairs_from_records(items), tokenizer)
    out = {}
    for name, slot in zip(hp.preference_pairs, slots_of(hp.preference_pairs)):
        rule = PREFERENCE_PAIRS[name]
        rows = []
        for ex in examples:
            e = ex[slot]
            win, lose = (e.positive_ids, e.negative_ids) if rule.adds else (e.negative_ids, e.positive_ids)
            mask = [-100] * len(e.prompt_ids)
            rows.append({"winning_input_ids": e.prompt_ids + win, "losing_input_ids": e.prompt_ids + lose,
                         "winning_labels": mask + win, "losing_labels": mask + lose})
        out[name] = rows
    return out


# ------------------------------------------------------------------------------------------ the table


def test_rows_point_at_their_variant_with_upstreams_signs():
    prefs = ALL_PAIRS
    assert variants_of(prefs) == [("question", "matching"), ("steered_input", "matching"),
                                  ("steered_input", "steered_output")]
    g = torch.Generator().manual_seed(0)
    idx, m, pos_wins = sample_rows(2, prefs, [3.0], g)
    assert idx.tolist() == [0, 1, 0, 1, 2, 3, 4, 5]  # orig_add/orig_sub share variant 0; steered_sub is variant 2
    # upstream's SFTModelTrainer: +factor for a pair named *_add, −factor otherwise (0 with null_it_out)
    assert m.tolist() == [3.0, 3.0, -3.0, -3.0, 3.0, 3.0, -3.0, -3.0]
    assert pos_wins.tolist() == [True, True, False, False, True, True, False, False]
    _, m0, _ = sample_rows(2, prefs, [3.0], g, null_it_out=True)
    assert m0.tolist() == [3.0, 3.0, 0.0, 0.0, 3.0, 3.0, 0.0, 0.0]


def test_hparams_accept_the_steered_pairs_and_refuse_others():
    assert _hp().preference_pairs == ALL_PAIRS
    with pytest.raises(HParamsError, match="preference_pairs' has \\['orig_mul'\\]; supported: orig_add, orig_sub, "
                                           "steered_add, steered_sub"):
        _hp(preference_pairs=["orig_add", "orig_mul"])
    with pytest.raises(HParamsError, match="steering_prompt_type' must be prepend or blend_in"):
        _hp(steering_prompt_type="append")


@pytest.mark.parametrize("pair, missing", [("steered_add", "blend_in_steered_input"),
                                           ("steered_sub", "blend_in_steered_input"),
                                           ("steered_sub", "blend_in_steered_output")])
def test_a_missing_field_is_refused_naming_it(tiny_tokenizer, pair, missing):
    items = [dict(ITEMS[0]), {k: v for k, v in ITEMS[1].items() if k != missing}]
    with pytest.raises(DataError, match=f"pair 1 \\(dataset:2\\) has no field '{missing}', which preference pair "
                                        f"'{pair}' reads \\(steering_prompt_type: blend_in\\)"):
        encode_examples(_hp(preference_pairs=["orig_add", pair]), pairs_from_records(items), tiny_tokenizer)
    # orig pairs alone never read the steered fields
    plain = [{k: ITEMS[0][k] for k in ("question", "matching", "not_matching")}]
    assert len(encode_examples(_hp(preference_pairs=["orig_add", "orig_sub"]), pairs_from_records(plain),
                               tiny_tokenizer)[0]) == 1


def test_the_steered_input_follows_the_prompt_rule_with_a_warning_under_a_template(tiny_tokenizer, caplog):
    with caplog.at_level(logging.WARNING):
        [ex, *_] = encode_examples(_hp(use_chat_template=True), pairs_from_records(ITEMS), tiny_tokenizer)
    steered = tiny_tokenizer.decode(ex[1].prompt_ids)
    assert "<|user|>" in steered and "i hate the sky" in steered
    assert any("applies the template to the question only" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------ upstream


@pytest.fixture(scope="module")
def data_utils():
    root = require_steering()
    with steer_on_path(root):
        from steer.trainer.utils import data_utils as module

        yield module


@pytest.mark.parametrize("steering_prompt_type", ["blend_in", "prepend"])
def test_rows_equal_upstreams_make_preference_data_module(data_utils, steering_prompt_type):
    from tests.conftest import build_tiny_tokenizer

    tiny_tokenizer = build_tiny_tokenizer()
    tiny_tokenizer.model_max_length = 128  # upstream truncates to it (its trainers set it from output_length)
    hp = _hp(steering_prompt_type=steering_prompt_type)
    ours = _plugin_rows(hp, tiny_tokenizer)
    module = data_utils.make_preference_data_module(
        tiny_tokenizer, ITEMS, positions="all", exclude_bos=True, prefix_length=1, preference_pairs=ALL_PAIRS,
        steering_prompt_type=steering_prompt_type)
    theirs = module["train_dataset"]
    assert len(theirs) == len(ITEMS)
    compared = 0
    for pair in ALL_PAIRS:
        for i, row in enumerate(ours[pair]):
            for key, value in row.items():
                assert theirs[i][f"{pair}_{key}"].tolist() == value, (pair, i, key)
                compared += 1
    assert compared == 4 * len(ITEMS) * 4
    # the steered rows really differ from the plain ones (the steered prompt, steered_sub's losing answer)
    assert ours["steered_add"][0]["winning_input_ids"] != ours["orig_add"][0]["winning_input_ids"]
    assert ours["steered_sub"][0]["losing_input_ids"] != ours["orig_sub"][0]["losing_input_ids"]


# ------------------------------------------------------------------------------------------ training


def test_training_on_a_file_with_steered_fields(tmp_path, tiny_tokenizer):
    data = tmp_path / "steered.jsonl"
    data.write_text("".join(json.dumps(item) + "\n" for item in ITEMS))
    pairs = read_pairs(data)
    assert pairs[0].meta["blend_in_steered_output"] == " no no"
    model = tiny_model("llama")
    out = tmp_path / "u.safetensors"
    trainer = Trainer(model, tiny_tokenizer, _hp(n_epochs=2))
    seen = []
    real = trainer.scorer.prepare
    trainer.scorer.prepare = lambda rows: seen.append(len(rows)) or real(rows)
    res = trainer.train(pairs, progress=False, output_path=out)
    assert seen == [2 * 3, 1 * 3]  # minibatches of 2 and 1 pairs, three encoded variants each
    assert all(torch.isfinite(torch.tensor(res.loss_history)))
    bundle = load_updates(out, model)
    assert bundle.hparams["preference_pairs"] == ALL_PAIRS and bundle.extra["n_train_pairs"] == 3


def test_a_ranks_share_of_a_minibatch_keeps_its_pairs_steered_rows(tiny_tokenizer):
    """Under torchrun a rank holds a block of each minibatch's pairs (all their variants): the ranks' shares of
    the loss add up to the one-process loss, steered rows included."""
    from easyedit_split.core.distributed import DistContext

    pairs = pairs_from_records(ITEMS)
    model = tiny_model("llama")

    def losses(world):
        out = []
        for rank in range(world):
            trainer = Trainer(model, tiny_tokenizer, _hp(batch_size=3))
            trainer.dist = DistContext(rank, world)
            [batch] = trainer.prepare(encode_examples(trainer.hp, pairs, tiny_tokenizer), progress=False)
            with torch.no_grad():
                loss = trainer.minibatch_loss(batch, torch.Generator().manual_seed(7))
            out.append(0.0 if loss is None else float(loss))
        return out

    one, two = losses(1), losses(2)
    assert one[0] > 0 and all(share > 0 for share in two)
    assert sum(two) == pytest.approx(one[0], rel=1e-5)
