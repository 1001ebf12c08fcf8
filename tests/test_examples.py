"""The examples run as a user runs them, and each method in them learns the digits."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

RUNS = {
    "own_loop_weightings.py": ["--steps", "150"],
    "own_loop_alphavil.py": ["--epochs", "2"],
    "own_loop_adalfl.py": ["--steps", "150"],
    "own_loop_taskmet.py": ["--outer-steps", "4"],
    "lightning_gradcos_adalfl.py": ["--epochs", "2"],
    "your_data.py": ["--steps", "60", "--runs-root", "{tmp}"],
}


def test_every_example_is_run_here():
    scripts = {p.name for p in EXAMPLES.glob("*.py")} - {"two_tasks.py"}
    assert scripts == set(RUNS)


@pytest.mark.parametrize(("script", "arguments"), RUNS.items(), ids=list(RUNS))
def test_an_example_runs_and_its_methods_learn(script: str, arguments: list[str], tmp_path):
    arguments = [argument.replace("{tmp}", str(tmp_path)) for argument in arguments]
    result = subprocess.run(
        [sys.executable, script, *arguments],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    accuracies = [float(a) for a in re.findall(r"test accuracy ([0-9.]+)", result.stdout)]
    assert accuracies, result.stdout
    assert min(accuracies) > 0.5, result.stdout  # chance is 0.1


def test_examples_fit_on_a_screen():
    for script in EXAMPLES.glob("*.py"):
        lines = script.read_text().splitlines()
        assert len(lines) <= 70, f"{script.name} has {len(lines)} lines"
