"""benchmarks/reproduce_readme.py: its steps against the real parsers and the README, its order, its CLI and its
runner (on stand-in steps of a few ``python -c`` commands: no model runs here)."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.easyedit_checkout import find_checkout

ROOT = Path(__file__).resolve().parents[1]
#: the README and the docs pages it sends readers to (figures and "Reproduce:" pointers live in both)
README = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))))


def _load():
    spec = importlib.util.spec_from_file_location("reproduce_readme", ROOT / "benchmarks" / "reproduce_readme.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce_readme"] = module
    spec.loader.exec_module(module)
    return module


rr = _load()


def ctx(tmp_path, threads=None, easyedit="/checkouts/EasyEdit", env=None):
    return rr.Context(python=sys.executable, root=ROOT, output=tmp_path / "out", easyedit=easyedit, threads=threads,
                      base_env=dict(env or {}))


def run_main(argv):
    """(exit status, stdout, stderr) of the script's main(argv)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = rr.main(argv)
        except SystemExit as exc:
            status = exc.code
    return status, out.getvalue(), err.getvalue()


def all_commands():
    return [(s, c) for s in rr.STEPS for c in s.commands]


# --- every command against the parser of the program it runs -------------------------------------------------------

#: commands no in-process parser checks, each checked by its own test below
OWN_TESTS = {"-c": "test_sitecustomize_writer_makes_the_site_folder_active",
             "examples/run_SPILT.py": "test_run_spilt_arguments_parse_with_easyedits_own_script"}


@pytest.mark.parametrize("threads", [None, 3])
def test_every_command_parses_with_the_real_parser_of_its_program(tmp_path, threads):
    c = ctx(tmp_path, threads=threads)
    for step, command in all_commands():
        r = rr.resolve(command, step, c)
        parse = rr.argument_parser(r.argv)
        if parse is None:
            assert r.argv[1] in OWN_TESTS, f"{step.name}: no parser checks {shlex.join(r.argv)}"
            continue
        args = parse(rr.program_arguments(r.argv))  # argparse exits (status 2) on a flag that drifted
        if command.threads_option and threads is not None:
            assert args.threads == threads, step.name
    rr.check_arguments(rr.STEPS, c)  # the check a run makes before it starts


def test_threads_option_is_declared_exactly_where_the_program_has_one(tmp_path):
    c = ctx(tmp_path)
    for step, command in all_commands():
        r = rr.resolve(command, step, c)
        parse = rr.argument_parser(r.argv)
        if parse is None:
            continue
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                parse([*rr.program_arguments(r.argv), "--threads", "2"])
                accepts = True
            except SystemExit:
                accepts = False
        assert accepts == command.threads_option, f"{step.name}: {shlex.join(r.argv)} (--threads: {accepts})"


def test_a_drifted_flag_is_caught_naming_the_step(tmp_path):
    step = rr.STEP_BY_NAME["doses"]
    bad = dataclasses.replace(step, commands=(dataclasses.replace(
        step.commands[0], argv=tuple(a.replace("--n-val", "--n-validation") for a in step.commands[0].argv)),))
    with pytest.raises(rr.SelectionError, match="'doses'.*n-validation"):
        rr.check_arguments([bad], ctx(tmp_path))
    table3 = rr.STEP_BY_NAME["table3"]
    bad = dataclasses.replace(table3, commands=(dataclasses.replace(
        table3.commands[0], argv=(*table3.commands[0].argv, "--set", "vectr.lr=0.1")),))
    with pytest.raises(rr.SelectionError, match="'table3'.*vectr"):
        rr.check_arguments([bad], ctx(tmp_path))


def test_run_spilt_arguments_parse_with_easyedits_own_script(tmp_path):
    checkout = find_checkout("examples/run_SPILT.py")
    if checkout is None:
        pytest.skip("no EasyEdit checkout with examples/run_SPILT.py ($EASYEDIT_PATH or shared/easyedit-553fd05)")
    step = rr.STEP_BY_NAME["easyedit_run_spilt"]
    (command,) = [c for c in step.commands if "examples/run_SPILT.py" in c.argv]
    r = rr.resolve(command, step, ctx(tmp_path))
    # its own parser, in --dry_run mode (routing only) on an empty base folder
    out = subprocess.run([sys.executable, str(checkout / "examples" / "run_SPILT.py"), *rr.program_arguments(r.argv),
                          "--dry_run", "--base_dir", str(tmp_path)], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stderr
    assert "Dataset: psychopathy" in out.stdout and "error:" not in out.stderr


def test_sitecustomize_writer_makes_the_site_folder_active(tmp_path):
    step = rr.STEP_BY_NAME["easyedit_run_spilt"]
    c = ctx(tmp_path)
    (writer,) = [x for x in step.commands if x.argv[1] == "-c"]
    r = rr.resolve(writer, step, c)
    site_dir = tmp_path / "out" / step.name / "site"
    site_dir.mkdir(parents=True)
    (site_dir / "probe.pth").write_text("import os; os.environ['REPRODUCE_README_PROBE'] = 'on'\n")
    env = {**os.environ, **c.env_updates()}
    subprocess.run(r.argv, cwd=r.cwd, env=env, check=True, timeout=120)
    assert (tmp_path / "out" / step.name / "boot" / "sitecustomize.py").is_file()
    (run,) = [x for x in step.commands if x.pythonpath]
    child_env = {**env, **rr.resolve(run, step, c).env_updates}
    probe = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('REPRODUCE_README_PROBE'))"],
                           env=child_env, capture_output=True, text=True, check=True, timeout=60)
    assert probe.stdout.strip() == "on"  # what the .pth of `easyedit enable --site-dir` relies on


# --- the README -------------------------------------------------------------------------------------------------------

def test_every_readme_image_and_every_docs_image_is_regenerated_by_a_step():
    produced = {name: step for step in rr.STEPS for _, name in step.figures}
    referenced = set(re.findall(r"(?:docs/)?img/([\w.-]+\.png)", README))
    assert referenced, "the README names no docs/img figure: the pattern is out of date"
    embedded = set(re.findall(r"!\[[^\]]*\]\((?:docs/)?img/([\w.-]+\.png)\)", README))
    assert embedded <= referenced
    missing = sorted((referenced | {p.name for p in (ROOT / "docs" / "img").glob("*.png")}) - set(produced))
    assert not missing, f"no step regenerates {missing}"
    for step in rr.STEPS:
        for src, _ in step.figures:
            assert src in step.writes, f"{step.name}: figure {src} is not among the files it writes"


def test_readme_points_to_every_step_it_can_run_and_names_only_real_steps():
    pointed = set()
    for names in re.findall(r"reproduce_readme\.py --only ([\w,]+)", README):
        pointed |= set(names.split(","))
    unknown = pointed - set(rr.STEP_BY_NAME)
    assert not unknown, f"the README points to unknown steps {sorted(unknown)}"
    inputs_only = {dep for s in rr.STEPS for dep in s.after}
    unpointed = sorted(s.name for s in rr.STEPS if s.name not in pointed | inputs_only)
    assert not unpointed, f"the README has no 'Reproduce:' pointer to {unpointed}"
    assert "python benchmarks/reproduce_readme.py --list" in README


# --- steps, dependencies, order ------------------------------------------------------------------------------------

def test_dependencies_run_first_and_their_outputs_are_declared(tmp_path):
    full = rr.order_steps(rr.STEPS, [s.name for s in rr.STEPS])
    assert sorted(s.name for s in full) == sorted(rr.STEP_BY_NAME)
    position = {s.name: i for i, s in enumerate(full)}
    for step in rr.STEPS:
        plan = [s.name for s in rr.order_steps(rr.STEPS, [step.name])]
        assert plan[-1] == step.name and set(plan[:-1]) == set(_closure(step)), step.name
        for dep in step.after:
            assert position[dep] < position[step.name]
        # every path into another step's folder names a declared dependency and a file that step writes
        for command in step.commands:
            for arg in command.argv:
                for other, rel in re.findall(r"\{output\}/(\w+)/([^\s,]+)", arg):
                    assert other in step.after, f"{step.name} reads {other}'s output without depending on it"
                    writes = rr.STEP_BY_NAME[other].writes
                    assert any(rel == w or rel.startswith(w + "/") for w in writes), (step.name, other, rel)
    assert [s.name for s in rr.order_steps(rr.STEPS, ["doses"])] == ["train_split_vector", "doses"]
    assert [s.name for s in rr.order_steps(rr.STEPS, ["doses", "dial_verify"])] == [
        "train_split_vector", "dial_verify", "doses"]


def _closure(step):
    out = set()
    for dep in step.after:
        out |= {dep} | _closure(rr.STEP_BY_NAME[dep])
    return out


def _stand_in(name, code="", after=(), writes=(), **kw):
    return rr.Step(name=name, section=f"figure of {name}", commands=(rr.Command(("{python}", "-c", code)),),
                   writes=writes, minutes=1, time_source="estimate: test", after=after, **kw)


def test_table_check_refuses_unknown_dependencies_cycles_and_hidden_needs():
    with pytest.raises(ValueError, match="'b' runs after 'nope'"):
        rr.check_table([_stand_in("a"), _stand_in("b", after=("nope",))])
    with pytest.raises(ValueError, match="cycle"):
        rr.check_table([_stand_in("a", after=("b",)), _stand_in("b", after=("a",))])
    with pytest.raises(ValueError, match="'b' depends on 'a', which needs GPU"):
        rr.check_table([_stand_in("a", needs_gpu=True), _stand_in("b", after=("a",))])
    with pytest.raises(ValueError, match="declared twice"):
        rr.check_table([_stand_in("a"), _stand_in("a")])
    rr.check_table()


def test_default_selection_skips_gpu_and_easyedit_steps_and_only_pulls_dependencies():
    steps, skipped = rr.select_steps(None, easyedit=None, gpu_available=None)
    names = {s.name for s in steps}
    assert "search_defaults" not in names and "editors" not in names and "easyedit_report" not in names
    assert {s.name for s, _ in skipped} == {s.name for s in rr.STEPS if s.needs_gpu or s.needs_easyedit}
    steps, skipped = rr.select_steps(None, easyedit="/e", gpu_available=None)
    assert {s.name for s in steps} == {s.name for s in rr.STEPS if not s.needs_gpu} and len(skipped) == 1
    steps, _ = rr.select_steps(["easyedit_report"], easyedit="/e", gpu_available=None)
    assert [s.name for s in steps] == ["easyedit_run_spilt", "easyedit_report"]
    with pytest.raises(rr.SelectionError, match="'editors' needs an EasyEdit checkout"):
        rr.select_steps(["editors"], easyedit=None, gpu_available=None)
    with pytest.raises(rr.SelectionError, match="'search_defaults' needs a GPU"):
        rr.select_steps(["search_defaults"], easyedit=None, gpu_available=False)


# --- the command line ----------------------------------------------------------------------------------------------

def test_list_names_every_step_with_its_time_needs_and_figure():
    status, out, _ = run_main(["--list"])
    assert status == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for step in rr.STEPS:
        line = rows[step.name]
        assert f"{step.minutes:g} min" in line and step.needs() in line and step.section in line
    assert "GPU" in rows["search_defaults"] and "EasyEdit" in rows["editors"]
    assert "~" in rows["wide_curves"] and "~" not in rows["doses"]  # estimated vs measured


def test_dry_run_prints_the_exact_commands_in_order_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("EASYEDIT_PATH", raising=False)
    out_root = tmp_path / "out"
    status, out, _ = run_main(["--only", "doses", "--dry-run", "--threads", "1", "--output", str(out_root)])
    assert status == 0 and not out_root.exists()
    assert "export OMP_NUM_THREADS=1" in out and f"cd {ROOT}" in out
    commands = [line for line in out.splitlines() if line.startswith(sys.executable)]
    assert len(commands) == 2
    c = ctx(tmp_path, threads=1)
    for line, step in zip(commands, [rr.STEP_BY_NAME["train_split_vector"], rr.STEP_BY_NAME["doses"]]):
        argv = shlex.split(line)
        log = out_root / step.name / "command1.log"
        assert argv[-3:] == [">", str(log), "2>&1"]
        assert argv[:-3] == rr.resolve(step.commands[0], step, c).argv  # the exact argv a run executes
    assert "train --hparams hparams/smollm2/split_vector.yaml" in commands[0] and "--threads" not in commands[0]
    assert commands[1].endswith(f"--threads 1 > {out_root}/doses/command1.log 2>&1")
    status, out, _ = run_main(["--dry-run", "--output", str(out_root)])
    assert status == 0 and "# skipped search_defaults: needs a GPU" in out and "# skipped editors:" in out
    assert "OMP_NUM_THREADS" not in out  # no --threads: the environment's setting stands
    assert not out_root.exists()


def test_dry_run_script_runs_as_shell_with_stand_in_commands(tmp_path):
    steps = [_stand_in("a", "open('a.txt', 'w').write('A')"),
             _stand_in("b", "import os; print('threads', os.environ['OMP_NUM_THREADS'])", after=("a",))]
    root = tmp_path / "repository"
    root.mkdir()
    c = dataclasses.replace(ctx(tmp_path, threads=2), root=root)
    text = rr.dry_run(rr.order_steps(steps, ["b"]), [], c, update_docs=False)
    subprocess.run(["bash", "-c", text], check=True, timeout=60)
    assert (root / "a.txt").read_text() == "A"  # cwd is the repository root, as in a run
    assert (tmp_path / "out" / "b" / "command1.log").read_text().strip() == "threads 2"


def test_unknown_only_name_is_an_error_naming_it(tmp_path):
    status, _, err = run_main(["--only", "doses,dosez", "--dry-run", "--output", str(tmp_path)])
    assert status == 2 and "unknown step 'dosez'" in err and "doses" in err


def test_only_an_easyedit_step_without_a_checkout_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("EASYEDIT_PATH", raising=False)
    status, _, err = run_main(["--only", "editors", "--dry-run", "--output", str(tmp_path)])
    assert status == 2 and "'editors' needs an EasyEdit checkout" in err
    status, _, err = run_main(["--only", "editors", "--dry-run", "--easyedit", str(tmp_path / "none")])
    assert status == 2 and "is not a folder" in err


def test_step_folders_of_an_earlier_run_are_refused_before_any_work(tmp_path, monkeypatch):
    def must_not_run(*a, **k):
        raise AssertionError("a step was started")

    monkeypatch.setattr(rr, "run_all", must_not_run)
    (tmp_path / "out" / "table3").mkdir(parents=True)
    (tmp_path / "out" / "table3" / "table3.md").write_text("old")
    status, _, err = run_main(["--only", "table3", "--output", str(tmp_path / "out")])
    assert status == 2 and "table3" in err and "--overwrite" in err


# --- the runner, on stand-in steps ---------------------------------------------------------------------------------

def test_run_writes_logs_record_and_docs_and_stops_at_the_first_failure(tmp_path):
    docs = tmp_path / "docs_img"
    steps = [
        _stand_in("first", "import os, pathlib; p = pathlib.Path(os.environ['STEP_DIR']); "
                           "(p / 'fig.png').write_bytes(b'png'); print('threads', os.environ['OMP_NUM_THREADS'])",
                  writes=("fig.png",), figures=(("fig.png", "first.png"),)),
        _stand_in("broken", "import sys; print('going wrong'); sys.exit(3)", after=("first",)),
        _stand_in("later", "print('never')"),
    ]
    c = ctx(tmp_path, threads=1, env={**os.environ, "STEP_DIR": str(tmp_path / "out" / "first")})
    with pytest.raises(rr.StepFailed) as info:
        rr.run_all(rr.order_steps(steps, ["broken", "later"]), [], c, update_docs=True, echo=False, docs_img=docs)
    message = str(info.value)
    assert "step 'broken' failed" in message and "exited with status 3" in message and "-c" in message
    assert (docs / "first.png").read_bytes() == b"png"
    assert (tmp_path / "out" / "first" / "command1.log").read_text().splitlines()[-1] == "threads 1"
    assert "going wrong" in (tmp_path / "out" / "broken" / "command1.log").read_text()
    record = (tmp_path / "out" / "REPRODUCED.md").read_text()
    assert "| `first` | figure of first | ok |" in record
    assert "| `broken` | figure of broken | failed |" in record
    assert "| `later` | figure of later | not run |" in record
    assert "still running or stopped" in record and "`fig.png`" in record and str(docs / "first.png") in record
    assert not list((tmp_path / "out").rglob("*.partial")) and not list(docs.glob("*.tmp"))


def test_a_step_that_does_not_write_what_it_declares_fails(tmp_path):
    step = _stand_in("quiet", "print('nothing written')", writes=("result.json",))
    with pytest.raises(rr.StepFailed, match="did not write result.json"):
        rr.run_all([step], [], ctx(tmp_path, env=os.environ), update_docs=False, echo=False)
    ok = _stand_in("fine", "print('ok')", writes=("command1.log",))
    records = rr.run_all([ok], [(rr.STEP_BY_NAME["editors"], "needs an EasyEdit checkout")],
                         ctx(tmp_path, env=os.environ), update_docs=False, echo=False)
    assert [r.status for r in records] == ["ok"]
    record = (tmp_path / "out" / "REPRODUCED.md").read_text()
    assert "finished" in record and "| `editors` |" in record and "skipped: needs an EasyEdit checkout" in record
