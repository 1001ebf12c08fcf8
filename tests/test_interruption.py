"""A stop signal is obeyed promptly and cleanly outside the training loop too: in the phases
after a run's last checkpoint, and by commands that run many trainings (``twcore bench``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from twcore_method_ew.method import EqualWeightingMethod

import twcore
from twcore.contract.callbacks import Callback
from twcore.orchestration.engine.checkpoint import load_checkpoint
from twcore.orchestration.engine.run_failure import RunFailure
from twcore.orchestration.engine.stopping import stop_signals_interrupt
from twcore.orchestration.registry import PluginRegistry, use_registry

RUN = ["steps=6", "eval_every=4", "checkpoint_every=0", "seed=3", "wandb.enabled=false"]


def test_stop_signals_interrupt_inside_the_block_and_not_after() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), stop_signals_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # never reached: the handler raises at once
    assert signal.getsignal(signal.SIGTERM) is before


class _TermDuringFinalEvaluation(Callback):
    """Sends this process SIGTERM when the final evaluation (step 6) has scored val."""

    def on_eval(self, step, split, metrics) -> None:
        if step == 6 and split == "val":
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_stop_during_the_final_evaluation_is_recorded_and_resume_finishes_it(
    tmp_path: Path,
) -> None:
    whole = twcore.run([*RUN, f"run_dir={tmp_path / 'whole'}"])
    run_dir = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        twcore.run([*RUN, f"run_dir={run_dir}"], callbacks=[_TermDuringFinalEvaluation()])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "interrupted at step 6" in summary["error"]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt", "cpu")["step"] == 6
    resumed = twcore.resume(run_dir)
    assert resumed.summary["status"] == "completed"
    assert resumed.metrics == whole.metrics


class _FailureSignalledWhileRecorded(RuntimeError):
    """A failure whose message, when the run formats it for its summary, sends this process
    SIGTERM: a signal arriving while the run records why it stopped (as torchrun's does to
    process 0 when another process of the run dies)."""

    def __str__(self) -> str:
        os.kill(os.getpid(), signal.SIGTERM)
        return "step 3 failed"


class _FailAtStep3(Callback):
    def on_step_end(self, step, result) -> None:
        if step == 3:
            raise _FailureSignalledWhileRecorded


def test_a_signal_while_a_failure_is_recorded_does_not_cut_the_record_short(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "failed"
    # As on the command line: outside a run's loop, SIGTERM interrupts.
    with pytest.raises(RunFailure, match="step 3 failed"), stop_signals_interrupt():
        twcore.run([*RUN, f"run_dir={run_dir}"], callbacks=[_FailAtStep3()])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "step 3 failed" in summary["error"]
    assert summary["steps"] == 3


class _TermWhileTheLastCheckpointIsWritten(EqualWeightingMethod):
    """Sends this process SIGTERM while the checkpoint after the last step (6) is written:
    after the loop's last agreement on whether to stop."""

    def state_dict(self) -> dict:
        if self.ctx.step == 6:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().state_dict()


def test_a_stop_after_the_loops_last_agreement_interrupts_the_final_phases(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "stopped"
    with use_registry(PluginRegistry()):
        twcore.register(
            "method", "ew-term-at-last-checkpoint", _TermWhileTheLastCheckpointIsWritten
        )
        with pytest.raises(KeyboardInterrupt):
            twcore.run([*RUN, "method=ew-term-at-last-checkpoint", f"run_dir={run_dir}"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "interrupted at step 6" in summary["error"]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt", "cpu")["step"] == 6
    assert "test" not in summary["metrics"]  # the final evaluation did not run


def test_bench_reports_each_run_and_stops_on_sigterm(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "twcore", "bench", "--steps", "20", "--repeats", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        # torch's compiler cache (created by torch.optim's first import) goes elsewhere
        env={**os.environ, "TMPDIR": str(scratch), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path)},
    )
    assert process.stderr is not None
    lines = []
    for line in process.stderr:  # one line per finished run, as it finishes
        lines.append(line)
        if line.startswith("bench: [2/"):
            break
    assert lines[-2].startswith("bench: [1/") and "ms per step" in lines[-2], lines
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted" in err
    assert time.monotonic() - started < 60  # it did not go on to the other 100+ runs
    assert out == ""  # no table of a benchmark that did not finish
    assert list(scratch.iterdir()) == []  # its scratch run directories are gone
