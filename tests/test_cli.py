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
