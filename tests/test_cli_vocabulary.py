"""One vocabulary for every command: every option has help text and --help shows the defaults; the same names
everywhere (--data, --multipliers, --model/--dtype/--device), old spellings still accepted with a warning;
commands that load a model check their paths first."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging

import pytest

from easyedit_split.cli import _all_parsers, build_parser, main


def _commands():
    parser = build_parser()
    return [(p.prog, p) for p in _all_parsers(parser)]


@pytest.mark.parametrize("prog, parser", _commands(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_option_has_help_and_help_shows_its_default(prog, parser):
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        if action.help == argparse.SUPPRESS:
            assert action.default == argparse.SUPPRESS, f"{prog}: hidden option {action.option_strings} sets a default"
            continue  # a deprecated spelling, hidden on purpose
        assert action.help, f"{prog}: {action.option_strings or action.dest} has no help text"
        shown = parser._get_formatter()._get_help_string(action)
        if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            assert "default" in shown, f"{prog}: the help of {action.option_strings} does not show its default"
    assert "usage:" in text


def test_the_same_names_in_every_command():
    parser = build_parser()
    subs = {name: p for name, p in parser._subparsers._group_actions[0].choices.items()}
    for name in ("sweep", "compare", "run", "train"):
        assert "--data" in subs[name]._option_string_actions, name
    for name in ("info", "sweep", "compare", "generate", "export", "run"):
        for opt in ("--model", "--dtype", "--device"):
            assert opt in subs[name]._option_string_actions, (name, opt)
    assert "--multipliers" in subs["generate"]._option_string_actions


@pytest.mark.parametrize("argv, dest, value", [
    (["run", "--dataset", "sentiment"], "dataset", "sentiment"),
    (["sweep", "--update", "u.safetensors", "--output", "o", "--dataset", "sentiment"], "data", "sentiment"),
    (["generate", "--prompt", "hi", "--multiplier", "0", "1"], "multipliers", ["0", "1"]),
])
def test_old_spellings_still_work_with_a_deprecation_warning(argv, dest, value):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    assert args.deprecated_options and "is deprecated; use --" in args.deprecated_options[0]
    new = build_parser().parse_args([a.replace("--dataset", "--data").replace("--multiplier", "--multipliers")
                                     for a in argv])
    assert getattr(new, dest) == value and not getattr(new, "deprecated_options", None)


def test_main_says_which_spelling_to_use_after_the_command(monkeypatch, caplog, capsys, tmp_path):
    from easyedit_split.core import models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    update = tmp_path / "u.safetensors"
    update.write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="easyedit_split.cli"):
        assert main(["generate", "--update", str(update), "--prompt", "hi", "--multiplier", "0,inf"]) == 2
    assert capsys.readouterr().err.startswith("error: --multipliers")
    assert [r.getMessage() for r in caplog.records] == ["--multiplier is deprecated; use --multipliers (same meaning)"]


@pytest.mark.parametrize("argv", [
    ["export", "--update", "missing.safetensors", "--multiplier", "1", "--output", "{tmp}/out"],
    ["generate", "--update", "missing.safetensors", "--prompt", "hi"],
])
def test_a_wrong_update_path_is_an_error_before_any_model_loads(argv, tmp_path, monkeypatch, capsys):
    from easyedit_split.core import models

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the update path was checked")

    monkeypatch.setattr(models, "load_model", no_load)
    monkeypatch.chdir(tmp_path)
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    assert "missing.safetensors" in capsys.readouterr().err


def test_export_refuses_an_existing_output_before_loading(tmp_path, monkeypatch, capsys):
    from easyedit_split.core import models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    update = tmp_path / "u.safetensors"
    update.write_bytes(b"x")
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["export", "--update", str(update), "--multiplier", "1", "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
