import json

import pytest

from easyedit_split.cli import COMMANDS, build_parser, main
from tests.tiny_models import tiny_model


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out
    assert set(build_parser()._subparsers._group_actions[0].choices) == set(COMMANDS)


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2"])
def test_info_prints_architecture_and_sites(tmp_path, capsys, arch):
    model = tiny_model(arch)
    model.save_pretrained(tmp_path / arch)
    from tests.conftest import build_tiny_tokenizer

    build_tiny_tokenizer().save_pretrained(tmp_path / arch)
    assert main(["info", "--model", str(tmp_path / arch), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_layers"] == 4 and info["hidden_size"] == 32 and info["known_architecture"]
    row = info["sites"][2]
    assert ("down_proj" in row["mlp_down"]) or ("c_proj" in row["mlp_down"])
    assert (row["residual_merge_target"] is None) == (arch == "gemma2")
    assert main(["info", "--model", str(tmp_path / arch)]) == 0
    assert "layer   3" in capsys.readouterr().out


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    assert main(["info", "--model", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope" in err and "Traceback" not in err


def test_compare_with_norm_doses_frontier_and_matched_accuracy(tmp_path, capsys):
    import torch

    from easyedit_split.core.serialization import save_updates
    from easyedit_split.core.sites import Site
    from easyedit_split.core.updates import VectorUpdate
    from tests.conftest import TINY_WORDS, build_tiny_tokenizer

    model = tiny_model("llama")
    model.save_pretrained(tmp_path / "m")
    build_tiny_tokenizer().save_pretrained(tmp_path / "m")
    words = [w for w in TINY_WORDS if w.isalpha()]
    rows = [{"question": f"{words[i % len(words)]} {words[(3 * i) % len(words)]} ?",
             "answer_matching_behavior": " yes", "answer_not_matching_behavior": " no"} for i in range(30)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    g = torch.Generator().manual_seed(0)
    vec = tmp_path / "vec.safetensors"
    save_updates(vec, [VectorUpdate(Site(1, "residual"), 32, vector=torch.randn(32, generator=g))], model=model,
                 method="sft")
    out = tmp_path / "out"
    args = ["compare", "--model", str(tmp_path / "m"), "--data", str(data), "--update", f"vec={vec}",
            "--update", "dm=diffmean@1", "--multipliers=-1,0,0.5,1,2", "--n-pairs", "8", "--n-train", "8",
            "--n-val", "6", "--dose", "norm", "--matched-accuracy", "0.5", "--reference", "dm", "--output", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "dose norm: raw m = " in printed and "accuracy 0.5: vec" in printed
    res = json.loads((out / "results.json").read_text())
    for name in ("vec", "dm"):
        d = res["methods"][name]["dose"]
        assert d["mode"] == "norm" and abs(d["relative_norm"] - 1.0) < 1e-6
        assert res["methods"][name]["frontier"]["m"] == [-1.0, 0.0, 0.5, 1.0, 2.0]
    (matched,) = res["matched_accuracy"]
    assert matched["target_accuracy"] == 0.5 and matched["reference"] == "dm"
    assert {r["m_source"] for r in matched["rows"]} == {"validation"}
    report = (out / "report.md").read_text()
    assert "## Doses" in report and "## Accuracy–utility frontier and matched accuracy" in report
    assert (out / "frontier.png").stat().st_size > 0
    bad = [*args[:-2], "--output", str(tmp_path / "o2")]
    bad[bad.index("--n-val") + 1] = "0"
    bad[bad.index("--dose") + 1] = "accuracy"
    assert main(bad) == 2
