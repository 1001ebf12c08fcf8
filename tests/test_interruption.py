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

import twcore
from twcore.contract.callbacks import Callback
from twcore.orchestration.engine.checkpoint import load_checkpoint
from twcore.orchestration.engine.stopping import sigterm_interrupts

RUN = ["steps=6", "eval_every=4", "checkpoint_every=0", "seed=3", "wandb.enabled=false"]


def test_sigterm_interrupts_inside_the_block_and_not_after() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), sigterm_interrupts():
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
