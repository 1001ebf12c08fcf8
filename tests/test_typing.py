"""Types for users' editors: every package ships a ``py.typed`` marker, the public API passes
mypy as configured in ``pyproject.toml`` (``[tool.mypy]``: the contract, autodiff, the test kit
and every method plugin, strict), and that check reports a call or an override with a wrong
signature, or a registration of something that is not a plugin class."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = [ROOT, *sorted(p.parent for p in ROOT.glob("plugins/*/*/pyproject.toml"))]
# Fixed, so that later runs reuse what mypy learnt about torch (a cold run takes ~15 s).
CACHE_DIR = Path(tempfile.gettempdir()) / "twcore-mypy-cache"


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    """mypy with the project's configuration (found from the repository root)."""
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(CACHE_DIR), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize("package_dir", PACKAGE_DIRS, ids=lambda p: p.name)
def test_every_package_ships_a_py_typed_marker(package_dir: Path) -> None:
    config = tomllib.loads((package_dir / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = config["tool"]["setuptools"].get("package-data", {})
    if package_dir == ROOT:
        packages = [ROOT / "twcore"]
    else:
        packages = [p.parent for p in (package_dir / "src").glob("*/__init__.py")]
    assert packages, f"no package found in {package_dir}"
    for package in packages:
        assert (package / "py.typed").is_file(), f"{package} has no py.typed"
        assert "py.typed" in package_data.get(package.name, []), (
            f"{package_dir / 'pyproject.toml'} must list py.typed in "
            f"[tool.setuptools.package-data] {package.name}"
        )


def test_the_public_api_passes_mypy() -> None:
    result = _mypy()
    assert result.returncode == 0, result.stdout + result.stderr


SNIPPET = '''\
"""Uses of the public API: mypy must report each line marked `wrong[code]`, and no other."""

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from twcore.contract import WeightedStep, Weighting
from twcore.contract.hookspecs import RegisterMethod, hookimpl
from twcore_method_ew import EqualWeighting, EqualWeightingMethod

losses = torch.zeros(3, requires_grad=True)
step: WeightedStep = EqualWeighting(3, selected=[0]).backward(losses)
weights: Tensor = step.weights
EqualWeighting("three")  # wrong[arg-type]


class Mean(Weighting):
    def backward(
        self,
        losses: Tensor,
        shared: Sequence[Tensor] = (),
        *,
        params: Iterable[Tensor] | None = None,
    ) -> WeightedStep:
        return WeightedStep(torch.full((self.num_objectives,), 1 / self.num_objectives))


class Halves(Weighting):
    def backward(self, losses: list[float]) -> WeightedStep:  # wrong[override]
        return WeightedStep(torch.tensor([0.5, 0.5]))


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    register("equal", EqualWeightingMethod)
    register("rule", EqualWeighting)  # wrong[arg-type]: a rule, not a Method
'''


def test_mypy_reports_wrong_arguments_and_a_wrong_override(tmp_path: Path) -> None:
    snippet = tmp_path / "uses_twcore.py"
    snippet.write_text(SNIPPET, encoding="utf-8")
    expected = {
        (number, match.group(1))
        for number, line in enumerate(SNIPPET.splitlines(), start=1)
        if (match := re.search(r"# wrong\[([a-z-]+)\]", line))
    }
    result = _mypy(str(snippet))
    reported = {
        (int(match.group(1)), match.group(2))
        for match in re.finditer(
            r"^.*uses_twcore\.py:(\d+): error: .*\[([a-z-]+)\]$", result.stdout, re.MULTILINE
        )
    }
    # Errors in twcore's own modules are test_the_public_api_passes_mypy's to report.
    assert reported == expected, textwrap.indent(result.stdout, "  ")
