"""Promises about the project itself: the README's commands, CI, documented and tested hooks,
and every plugin package being complete."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from twcore.contract import hookspecs

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIRS = sorted(p.parent for p in ROOT.glob("plugins/*/*/pyproject.toml"))


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.DOTALL)
    assert block is not None and text.index("```bash") < text.index("\n## "), (
        "the README must open with its commands"
    )
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_commands_install_and_main_job_then_tests():
    install_and_run, install_and_test = _readme_commands()
    assert install_and_run.startswith("bash install.sh && ")
    assert install_and_test == "bash install.sh && python3 -m pytest"


def test_ci_runs_the_readmes_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert _readme_commands()[1] in ci


def test_rerunning_install_sh_on_an_installed_checkout_skips_pip():
    """After the README's command has installed everything (as it has before the suite runs),
    install.sh finds torch and every package installed from this checkout and unchanged, so a
    re-run would skip pip (``--check`` says so and changes nothing)."""
    environment = {**os.environ, "PYTHON": sys.executable}
    check = subprocess.run(
        ["bash", str(ROOT / "install.sh"), "--check"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, f"{check.stdout}{check.stderr} (run `bash install.sh` first)"
    assert "up to date" in check.stdout


def _hook_names() -> list[str]:
    return [
        name
        for name, obj in vars(hookspecs).items()
        if name.startswith("twcore_") and inspect.isfunction(obj)
    ]


def test_every_hook_is_documented_and_exercised_by_a_test():
    # The plugin guide is the documentation site (docs/), which the README links to.
    documentation = "".join(
        p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *ROOT.glob("docs/**/*.md")]
    )
    tests = "".join(
        p.read_text(encoding="utf-8")
        for p in ROOT.glob("tests/**/*.py")
        if p.name != "test_project.py"
    )
    for name in _hook_names():
        function = getattr(hookspecs, name)
        assert function.__doc__ and "Called" in function.__doc__, f"{name} lacks a docstring"
        assert name in documentation, f"{name} is not documented in the README or docs/"
        assert name in tests, f"no test implements {name}"


@pytest.mark.parametrize("plugin_dir", PLUGIN_DIRS, ids=lambda p: p.name)
def test_every_plugin_package_has_an_entry_point_a_readme_and_conformance_tests(plugin_dir):
    project = tomllib.loads((plugin_dir / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["entry-points"]["twcore"], "no twcore entry point"
    assert "twcore" in " ".join(project["project"]["dependencies"])
    assert (plugin_dir / "README.md").read_text(encoding="utf-8").strip()
    tests = "".join(p.read_text(encoding="utf-8") for p in plugin_dir.glob("tests/test_*.py"))
    assert "Conformance)" in tests, "plugin tests do not run a twcore.testing conformance suite"


def test_no_device_literals_in_the_code():
    offenders = []
    for path in [*ROOT.glob("twcore/**/*.py"), *ROOT.glob("plugins/*/*/*/*.py")]:
        text = path.read_text(encoding="utf-8")
        if re.search(r"\.cuda\(|['\"]cuda:\d['\"]", text):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"device literals in {offenders}"


def _expand(token: str) -> list[str]:
    """``optim.{lr,name}`` → ``optim.lr``, ``optim.name``; ``seed`` → ``seed``."""
    match = re.fullmatch(r"(.*)\{(.*)\}", token)
    if match is None:
        return [token]
    return [match[1] + part for part in match[2].split(",")]


def test_the_run_level_key_list_in_the_guide_is_the_schemas():
    """docs/running.md names every run-level key the schema has, and no other (the generated
    CLI reference lists them with types and help; this prose list must not drift from it)."""
    from twcore.orchestration.config.describe import describe_config
    from twcore.orchestration.config.schema import PLUGIN_SECTIONS, RunConfig

    text = (ROOT / "docs" / "running.md").read_text()
    paragraph = text.split("Run-level keys", 1)[1].split("):", 1)[1].split("\n\n", 1)[0]
    named = {key for token in re.findall(r"`([^`]+)`", paragraph) for key in _expand(token)}
    schema = {k.key for k in describe_config(RunConfig)} - set(PLUGIN_SECTIONS)
    assert named == schema, (
        f"missing from docs/running.md: {sorted(schema - named)}; "
        f"not in the schema: {sorted(named - schema)}"
    )
