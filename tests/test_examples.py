"""The example scripts parse their arguments and import everything they use (they run on the real model)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_there_are_four_examples():
    assert {p.name for p in EXAMPLES} >= {"run_split.py", "compare_methods.py", "evaluate_easyedit_intervention.py",
                                          "register_in_easyedit.py"}


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_help(script):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # this checkout
    proc = subprocess.run([sys.executable, str(script), "--help"], check=False, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout
