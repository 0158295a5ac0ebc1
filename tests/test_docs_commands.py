"""Every shell command shown in README.md and the docs pages runs as shown: each is checked against the program
it calls (the CLI's parser, a benchmark script's parser, an example's options, a file that must exist), or is
in MANUAL with the reason it cannot be checked here. Commands are the lines of ```bash blocks and 4-space
indented blocks and the `$ `-prompted lines of other blocks; the generated tables of docs pages match their
data."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: commands that are documented but not parsed here, each with its reason (they run in CI or by hand)
MANUAL = {
    "bash scripts/setup.sh": "builds .venv (minutes, network); the README's quick start, timed by hand",
    ".venv/bin/python -m pytest -q tests": "the whole suite; CI runs it",
    "pip install -e .[easyedit]": "installs into the environment",
}
SHELL_BUILTINS = {"cd", "echo", "time", "export"}
_PROGRAMS = ("easyedit-split", ".venv/bin/easyedit-split", "python", ".venv/bin/python", "bash", "pip",
             "EASYEDIT_PATH=", "PYTHONPATH=", "OMP_NUM_THREADS=", "torchrun")


def _blocks(text: str) -> list[tuple[str, bool]]:
    """(block text, every line is a command): fenced ```bash/sh/shell blocks and 4-space indented blocks hold
    commands; other fenced blocks (no language, console, text: output) only their `$ `-prompted lines."""
    out = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.DOTALL):
        out.append((body, lang in ("bash", "sh", "shell")))
    text_wo_fences = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    indented = re.findall(r"(?:^|\n\n)((?:    +\S.*\n?)+)", text_wo_fences)
    out += [("\n".join(line[4:] for line in block.splitlines()), True) for block in indented]
    return out


def doc_commands(text: str) -> list[str]:
    """Command lines (continuations joined, prompts and comments dropped) that call a program."""
    commands = []
    for body, all_lines in _blocks(text):
        joined = re.sub(r"\\\n\s*", " ", body)
        for line in joined.splitlines():
            line = line.strip()
            prompted = line.startswith("$ ")
            if prompted:
                line = line[2:]
            elif not all_lines:
                continue  # program output, not a command
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith(_PROGRAMS):
                for part in line.split("&&"):
                    commands.append(part.strip())
    return commands


def _argv(command: str) -> list[str]:
    argv = shlex.split(command)
    while argv and (re.match(r"^[A-Z_]+=", argv[0]) or argv[0] in SHELL_BUILTINS):
        argv = argv[1:]
    return argv


def _cli_parser():
    from easyedit_split.cli import build_parser

    return build_parser()


def _script_parser(path: Path):
    spec = importlib.util.spec_from_file_location(f"_docs_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if hasattr(module, "build_parser"):
        return module.build_parser().parse_args
    return getattr(module, "parse_args", None)


def check_command(command: str) -> str:
    """Parse ``command`` with its program's parser (argparse exits with status 2 on a bad option); returns how it
    was checked."""
    if command in MANUAL:
        return "manual"
    argv = _argv(command)
    prog = argv[0]
    if prog in ("easyedit-split", ".venv/bin/easyedit-split"):
        with contextlib.redirect_stdout(io.StringIO()):
            _cli_parser().parse_args(argv[1:])
        return "cli"
    if prog in ("python", ".venv/bin/python", "python3"):
        if argv[1:3] == ["-m", "easyedit_split.cli"]:
            with contextlib.redirect_stdout(io.StringIO()):
                _cli_parser().parse_args(argv[3:])
            return "cli"
        if argv[1:3] == ["-m", "easyedit_split.editing.compare"]:
            from easyedit_split.editing.compare import build_parser

            build_parser().parse_args(argv[3:])
            return "editing.compare"
        if argv[1:3] == ["-m", "pytest"]:
            targets = [a.split("::")[0] for a in argv[3:] if not a.startswith("-")]
            assert targets and all((ROOT / t).exists() for t in targets), command
            return "pytest targets exist"
        script = ROOT / argv[1]
        assert script.is_file(), f"{command}: {argv[1]} does not exist"
        if argv[1].startswith("benchmarks/"):
            parse = _script_parser(script)
            assert parse is not None, f"{argv[1]} exposes no parser (build_parser or parse_args)"
            with contextlib.redirect_stdout(io.StringIO()):
                parse(argv[2:])
            return "script parser"
        if argv[1].startswith("examples/"):
            source = script.read_text(encoding="utf-8")
            for flag in (a.split("=")[0] for a in argv[2:] if a.startswith("--")):
                assert f'"{flag}"' in source, f"{command}: {argv[1]} has no option {flag}"
            return "example options"
    if prog == "torchrun":  # torchrun's own options, then -m easyedit_split.cli and the command
        assert "-m" in argv, f"{command}: torchrun runs a module here (-m easyedit_split.cli)"
        module = argv.index("-m")
        assert argv[module + 1] == "easyedit_split.cli", command
        with contextlib.redirect_stdout(io.StringIO()):
            _cli_parser().parse_args(argv[module + 2:])
        return "cli under torchrun"
    if prog == "bash":
        assert (ROOT / argv[1]).is_file(), command
        return "script exists"
    raise AssertionError(f"no check for the documented command {command!r}: check it here or add it to MANUAL")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_documented_command_parses(page):
    commands = doc_commands(page.read_text(encoding="utf-8"))
    for command in commands:
        try:
            check_command(command)
        except SystemExit as exc:  # argparse: a drifted flag or a missing argument
            raise AssertionError(f"{page.name}: {command!r} does not parse (exit {exc.code})") from None


def test_the_readme_shows_the_quick_start_and_every_cli_command_it_lists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = doc_commands(readme)
    assert "bash scripts/setup.sh && .venv/bin/easyedit-split run" in readme
    assert ".venv/bin/python -m pytest -q tests" in commands
    from easyedit_split.cli import COMMANDS

    shown = {_argv(c)[1] for c in commands if _argv(c)[0] == "easyedit-split"}
    assert set(COMMANDS) <= shown, f"the README's command list lacks {sorted(set(COMMANDS) - shown)}"
    assert len(readme.splitlines()) <= 250


def test_a_drifted_flag_is_caught():
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        check_command("easyedit-split sweep --update u.safetensors --multiplier-grid 1,2 --output o/")
    with pytest.raises(AssertionError, match="no option --n-trian"):
        check_command("python examples/compare_methods.py --n-trian 3")
    with pytest.raises(AssertionError, match="no check"):
        check_command("curl http://example.org")


def test_the_generated_tables_match_their_data():
    spec = importlib.util.spec_from_file_location("_render_docs", ROOT / "benchmarks" / "render_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for page in module.PAGES:
        text = page.read_text(encoding="utf-8")
        assert module.block_names(text), f"{page.name} has no generated block"
        _, changed = module.render_page(text, module.renderers(module.MAIN_JOB_DIR))
        assert not changed, f"{page.name}: {changed} differ from their data; run python benchmarks/render_docs.py"
