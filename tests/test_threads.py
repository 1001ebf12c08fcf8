"""The run-level ``threads`` option: what ``auto`` chooses, and that a run applies it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import twcore
from twcore.contract.callbacks import Callback
from twcore.contract.errors import ConfigError
from twcore.orchestration.cli.main import main
from twcore.orchestration.engine import threads
from twcore.orchestration.engine.threads import (
    MAX_AUTO_THREADS,
    busy_warning,
    choose_threads,
    machine_load,
    parse_setting,
    pinned_threads,
    usable_cores,
)


@pytest.fixture(autouse=True)
def _torch_threads_as_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test session sets torch's threads itself; here they count as never changed."""
    monkeypatch.setattr(threads, "_TORCH_AT_IMPORT", torch.get_num_threads())


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5", ""])
def test_a_bad_setting_names_the_key_and_what_is_valid(bad: str) -> None:
    with pytest.raises(ConfigError, match=f"threads={bad}: give auto or a whole number"):
        parse_setting(bad)


def test_settings_parse() -> None:
    assert parse_setting("auto") is None and parse_setting("AUTO") is None
    assert parse_setting("3") == 3 and parse_setting(4) == 4


def test_usable_cores_are_capped_by_a_cgroup_quota(tmp_path: Path) -> None:
    affinity = usable_cores(tmp_path / "missing")
    quota = tmp_path / "cpu.max"
    quota.write_text("max 100000\n")
    assert usable_cores(quota) == affinity
    quota.write_text("50000 100000\n")  # half a core: at least one
    assert usable_cores(quota) == 1
    quota.write_text("150000 100000\n")
    assert usable_cores(quota) == min(affinity, 2)


def test_the_load_is_the_larger_of_the_average_and_the_other_runnable_processes(
    tmp_path: Path,
) -> None:
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.50 0.40 0.30 4/456 789\n")
    assert machine_load(loadavg) == 3.0  # four runnable, this process one of them
    loadavg.write_text("7.25 6.0 5.0 1/456 789\n")
    assert machine_load(loadavg) == 7.25


def _choose(setting: object = "auto", **kwargs: object) -> threads.ThreadChoice:
    defaults: dict[str, object] = {"environ": {}, "cores": lambda: 2, "load": lambda: 0.1}
    return choose_threads(setting, **{**defaults, **kwargs})  # type: ignore[arg-type]


def test_auto_keeps_what_was_chosen_outside_the_run_then_backs_off_on_a_busy_machine() -> None:
    assert _choose("3").threads == 3  # as set, busy or not
    assert _choose("3", load=lambda: 40.0).threads == 3
    chosen = _choose(environ={"OMP_NUM_THREADS": "1"})
    assert (chosen.threads, chosen.reason) == (1, "OMP_NUM_THREADS")
    with pinned_threads(5):
        assert _choose().threads == 5
    busy = _choose(load=lambda: 20.0)
    assert busy.threads == 1 and busy.oversubscribed
    assert "load 20.0 on 2 usable cores" in (busy_warning(busy) or "")
    # a choice made outside the run is kept without a warning, busy or not
    assert busy_warning(_choose(environ={"OMP_NUM_THREADS": "2"}, load=lambda: 20.0)) is None
    idle = _choose()
    assert idle.threads == 2 and busy_warning(idle) is None
    assert _choose(cores=lambda: 64).threads == MAX_AUTO_THREADS
    assert _choose(load=lambda: None).threads == 2  # unknown load: the cores


def test_auto_keeps_a_torch_setting_the_program_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "_TORCH_AT_IMPORT", torch.get_num_threads() + 1)
    chosen = _choose()
    assert chosen.threads == torch.get_num_threads()
    assert chosen.reason == "torch.set_num_threads in this program"


def test_a_run_applies_records_and_restores_its_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = torch.get_num_threads()
    seen: list[int] = []

    class Probe(Callback):
        def on_step_end(self, step: int, result: object) -> None:  # type: ignore[override]
            seen.append(torch.get_num_threads())

    common = ["steps=2", "eval_every=0", "wandb.enabled=false"]
    result = twcore.run([*common, "threads=1", f"run_dir={tmp_path / 'a'}"], callbacks=[Probe()])
    assert seen == [1, 1] and torch.get_num_threads() == before
    recorded = json.loads((tmp_path / "a" / "summary.json").read_text())["threads"]
    assert recorded["threads"] == 1 and recorded["setting"] == "1"
    assert result.summary["threads"] == recorded

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "machine_load", lambda: 50.0)
    busy = twcore.run([*common, f"run_dir={tmp_path / 'b'}"])
    assert busy.summary["threads"]["threads"] == 1
    assert "the machine is busy (load 50.0" in capsys.readouterr().err


def test_a_bad_threads_value_is_a_one_line_error_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "threads=lots", f"run_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert "threads=lots: give auto or a whole number" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()
