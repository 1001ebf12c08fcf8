"""A third-party method plugin, built from a folder and installed with pip, runs by name."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import venv

import pytest


@pytest.fixture
def environment_with_plugin(tmp_path, fixtures_dir):
    """A virtualenv layered on the test environment (which holds twcore), plus the plugin."""
    home = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(home)
    python = home / "bin" / "python"
    source = tmp_path / "source"  # a copy: building writes egg-info and build/ into the tree
    shutil.copytree(fixtures_dir / "third_party_method", source)
    command = [
        str(python),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--disable-pip-version-check",
        str(source),
    ]
    if importlib.util.find_spec("setuptools") is not None:
        command.insert(5, "--no-build-isolation")  # build offline with the installed setuptools
    installed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    return python, source


def test_pip_installed_plugin_is_listed_and_runs_by_name(environment_with_plugin, tmp_path):
    python, _ = environment_with_plugin
    listing = subprocess.run(
        [str(python), "-m", "twcore", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["loss-weighted"]["distribution"] == "twcore-example-lossweighted"
    assert rows["loss-weighted"]["version"] == "1.2.3"
    assert rows["loss-weighted"]["status"] == "loaded"

    run_dir = tmp_path / "run"
    run = subprocess.run(
        [
            str(python),
            "-m",
            "twcore",
            "run",
            "-q",
            "method=loss-weighted",
            "method.temperature=2",
            "steps=30",
            "wandb.enabled=false",
            f"run_dir={run_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["plugins"]["loss-weighted"] == "1.2.3"
    assert summary["config"]["method"] == {"name": "loss-weighted", "temperature": 2.0}


def test_the_plugins_own_tests_pass_where_it_is_installed(environment_with_plugin):
    """The plugin guide's layout: tests/ beside src/, run with the test kit of twcore."""
    python, source = environment_with_plugin
    tests = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(source / "tests")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=source,
    )
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout


def test_the_plugin_is_not_visible_outside_its_environment(run_cli):
    assert "loss-weighted" not in run_cli("plugins").stdout
    assert sys.prefix  # the test environment itself was not modified
