"""One progress rule: a bar on a terminal, INFO log lines otherwise, nothing with --no-progress; and no lock file
left in an output folder."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from easyedit_split.base import progress as progress_module
from easyedit_split.base.atomic_io import output_lock
from easyedit_split.base.progress import LogProgress, progress, set_progress

ROOT = Path(__file__).resolve().parent.parent


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _progress_on():
    set_progress(True)
    yield
    set_progress(True)


def test_a_terminal_gets_a_tqdm_bar(monkeypatch):
    from tqdm.auto import tqdm

    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = progress(range(5), desc="demo", unit="row")
    assert isinstance(bar, tqdm)
    assert list(bar) == [0, 1, 2, 3, 4]
    assert "demo" in term.getvalue()


def test_a_log_file_gets_periodic_info_lines_and_no_carriage_returns(monkeypatch, caplog):
    err = io.StringIO()  # not a TTY
    monkeypatch.setattr(sys, "stderr", err)
    clock = iter(float(t) for t in range(0, 1000, 10))  # every call 10 s later
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="easyedit_split.base.progress"):
        bar = progress(total=8, desc="sweep rows", unit="row")
        assert isinstance(bar, LogProgress)
        bar.every = 25.0
        for _ in range(8):
            bar.update(1)
        bar.set_postfix(loss="0.5")
        bar.close()
        bar.close()  # once only
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "sweep rows: started (0/8 row, 0%)"
    assert lines[-1].startswith("sweep rows: done, 8/8 row, 100%") and "loss=0.5" in lines[-1]
    middle = lines[1:-1]
    assert 2 <= len(middle) <= 4, lines  # every 25 s of the 90 s, not once per update
    assert all("s left" in m for m in middle)
    assert "\r" not in err.getvalue() and err.getvalue() == ""


def test_wrapping_an_iterable_logs_its_end_unless_it_was_quick_or_empty(monkeypatch, caplog):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    clock = iter([0.0, 0.1, 0.2, 0.3, 100.0, 200.0, 300.0, 400.0])
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="easyedit_split.base.progress"):
        assert list(progress(["a", "b"], desc="quick", unit="batch")) == ["a", "b"]  # 0.3 s: no "done"
        assert list(progress([], desc="empty")) == []  # nothing at all
        assert list(progress(["a"], desc="slow", unit="batch")) == ["a"]
    assert [r.getMessage().split(",")[0] for r in caplog.records] == [
        "quick: started (0/2 batch", "slow: started (0/1 batch", "slow: 1/1 batch", "slow: done"]


def test_off_per_loop_and_for_the_process(monkeypatch, caplog):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    with caplog.at_level(logging.INFO, logger="easyedit_split.base.progress"):
        assert list(progress([1, 2], desc="x", enabled=False)) == [1, 2]
        set_progress(False)
        quiet = progress(total=3, desc="y")
        quiet.update(3)
        quiet.close()
        assert list(progress([3], desc="z")) == [3]
    assert not caplog.records and sys.stderr.getvalue() == ""


def test_no_progress_is_one_global_flag_accepted_before_and_after_every_command():
    from easyedit_split.cli import COMMANDS, build_parser

    parser = build_parser()
    assert parser.parse_args(["--no-progress", "info"]).no_progress is True
    assert parser.parse_args(["info"]).no_progress is False
    for name in COMMANDS:
        sub = parser._subparsers._group_actions[0].choices[name]
        assert "--no-progress" in sub._option_string_actions, name
    assert parser.parse_args(["info", "--no-progress"]).no_progress is True
    assert parser.parse_args(["--no-progress", "train", "--hparams", "h.yaml"]).no_progress is True
    assert parser.parse_args(["train", "--hparams", "h.yaml", "--no-progress"]).no_progress is True


def test_no_tqdm_outside_the_progress_module():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "easyedit_split").rglob("*.py")
                 if p.name != "progress.py" and "tqdm" in p.read_text(encoding="utf-8")]
    assert not offenders, f"use easyedit_split.base.progress instead of tqdm in {offenders}"


def test_the_lock_file_is_removed_on_release_and_still_excludes_a_second_writer(tmp_path):
    with output_lock(tmp_path, what="--output"):
        assert (tmp_path / ".easyedit-split.lock").exists()
        code = f"from easyedit_split.base.atomic_io import output_lock\nwith output_lock({str(tmp_path)!r}):\n    pass"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                              check=False)
        assert proc.returncode != 0 and "being written by another easyedit-split process" in proc.stderr
    assert not (tmp_path / ".easyedit-split.lock").exists()
    with output_lock(tmp_path):  # and it can be taken again
        pass
    assert list(tmp_path.iterdir()) == []
