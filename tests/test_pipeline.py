import json

import pytest

from easyedit_split.jobs.main_job import MainJobConfig, parse_forms, run_main_job
from tests.conftest import build_tiny_tokenizer
from tests.tiny_models import tiny_model

QUESTIONS = ["is the sky blue ?", "i like this film", "was the food great ?", "i hate this place",
             "write a short review of the pizza place", "is this film awful ?", "i like the food on elm street",
             "was it great ?", "is the review short ?", "answer : is it blue ?", "i hate the film", "was the place great ?"]


@pytest.fixture()
def tiny_setup(tmp_path):
    model = tiny_model("llama")
    tok = build_tiny_tokenizer()
    model.config.pad_token_id = tok.pad_token_id
    model.config.eos_token_id = tok.eos_token_id
    model.config.bos_token_id = tok.bos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    data = tmp_path / "pairs.jsonl"
    with open(data, "w") as fh:
        for i, q in enumerate(QUESTIONS):
            pos, neg = ("yes", "no") if i % 2 else ("no", "yes")
            fh.write(json.dumps({"question": q, "answer_matching_behavior": pos, "answer_not_matching_behavior": neg}) + "\n")
    hp = tmp_path / "hparams"
    hp.mkdir()
    common = "layers: [1]\nn_epochs: 1\nbatch_size: 2\ngradient_accumulation_steps: 1\nsteering_factors: [1.0]\n"
    (hp / "split_vector.yaml").write_text("alg_name: split\nintervention_method: vector\nlr: 0.1\n" + common +
                                          "neg_loss_weight: 0.5\nmargin_penalty_weight: 4\nmargin_threshold: 0.5\n")
    (hp / "sft_lora.yaml").write_text("alg_name: sft\nintervention_method: lora\nlow_rank_dimension: 2\nlr: 0.05\n" + common)
    (hp / "diffmean.yaml").write_text("alg_name: diffmean\nlayers: [1]\n")
    return tmp_path, data, hp


def test_main_job_end_to_end_on_a_tiny_model(tiny_setup):
    tmp_path, data, hp = tiny_setup
    cfg = MainJobConfig(model=str(tmp_path / "model"), dataset=str(data), forms=("vector", "lora"),
                        methods=("split", "sft", "diffmean"), hparams_dir=str(hp), n_train=8, n_test=4, n_eval=4,
                        multipliers=(-2.0, -1.0, 0.0, 1.0, 2.0), prompts=("is the sky blue ?", "i like this film"),
                        gen_multipliers=(0.0, 1.0), max_new_tokens=3, output_dir=str(tmp_path / "out"), progress=False,
                        n_val=0, dose="norm", matched_accuracy=(0.5,))
    hp_missing = pytest.raises(FileNotFoundError, match="sft_vector.yaml")
    with hp_missing:
        run_main_job(cfg)  # sft has no vector hparams file in this folder
    cfg.methods = ("split", "diffmean")
    cfg.forms = ("vector",)
    result = run_main_job(cfg)
    out = result.output_dir
    for name in ("config.json", "summary.md", "summary.json", "samples.jsonl", "eval_vector/report.md",
                 "updates/split_vector.safetensors", "updates/diffmean_vector.safetensors"):
        assert (out / name).exists(), name
    assert list((out / "eval_vector").glob("*.png"))
    config = json.loads((out / "config.json").read_text())
    assert config["main_job"]["n_train"] == 8 and "split_vector" in config["hparams"]
    methods = {(r["form"], r["method"]) for r in result.table}
    assert methods == {("vector", "unsteered"), ("vector", "split"), ("vector", "diffmean")}
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {s["method"] for s in samples} == {"unsteered", "split", "diffmean"}
    assert all("perplexity" in s for s in samples)
    # the probe scores every non-empty completion (an empty one has no tokens to read: NaN)
    assert all((0 <= s["concept"] <= 1) != (s["text"] == "" and s["concept"] != s["concept"]) for s in samples)
    summary = json.loads((out / "summary.json").read_text())
    if summary["concept"]["onsets"]:  # the tiny model may stop at once unsteered: no perplexity to bound
        assert {o["method"] for o in summary["concept"]["onsets"]} == {"split", "diffmean"}
    assert summary["concept"]["probe"]["n_train_pairs"] + summary["concept"]["probe"]["n_test_pairs"] == 8
    (matched,) = summary["matched_accuracy"]["vector"]
    assert matched["target_accuracy"] == 0.5 and {r["method"] for r in matched["rows"]} == {"split", "diffmean"}
    text = (out / "summary.md").read_text()
    assert "Dose (vector): norm" in text
    results = json.loads((out / "eval_vector" / "results.json").read_text())
    assert abs(results["methods"]["diffmean"]["dose"]["relative_norm"] - 1.0) < 1e-6
    assert not list(out.rglob("*.tmp"))


def test_parse_forms():
    assert parse_forms("all") == ("vector", "lora", "local_weight")
    assert parse_forms("vector,lora") == ("vector", "lora")
    with pytest.raises(ValueError, match="unknown"):
        parse_forms("vector,bogus")
