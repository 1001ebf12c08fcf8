"""A run directory under stress: two processes at once, a killed owner, a full disk, an
unwritable place, a resume asked to train backwards."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from twcore.contract.atomic_files import atomic_write, atomic_write_text
from twcore.contract.errors import ConfigError, RunDirectoryError
from twcore.orchestration import api
from twcore.orchestration.backends import SweepOptions
from twcore.orchestration.cli.main import main
from twcore.orchestration.engine.checkpoint import load_checkpoint
from twcore.orchestration.engine.lock import LOCK_FILE, RunLock
from twcore.orchestration.engine.rundir import RunDirectory
from twcore.orchestration.sweep import run_sweep

QUIET = ["wandb.enabled=false", "eval_every=0"]


def _cli(*arguments: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "twcore", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        **kwargs,
    )


def _wait_for_lock_owner(run_dir: Path, process: subprocess.Popen, timeout: float = 120) -> int:
    """The pid recorded in the run's lock file once the process holds it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            owner = json.loads((run_dir / LOCK_FILE).read_text() or "{}")
        except (OSError, ValueError):
            owner = {}
        if owner.get("pid") == process.pid and (run_dir / "metrics.jsonl").exists():
            return process.pid
        time.sleep(0.05)
    raise AssertionError("the run never took its lock")


def test_a_second_resume_of_a_run_in_use_is_refused_naming_the_owner(tmp_path):
    run_dir = tmp_path / "run"
    api.run(["steps=2", f"run_dir={run_dir}", *QUIET])
    first = _cli("resume", "-q", str(run_dir), "steps=200000")
    try:
        pid = _wait_for_lock_owner(run_dir, first)
        second = _cli("resume", "-q", str(run_dir), "steps=200000")
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2, err
        assert err.count("\n") == 1 and f"is in use by process {pid}" in err, err
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130
    # The first run was not disturbed: it checkpointed on the signal and resumes.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    # However far it got before the signal (it depends on the machine's speed), it continues.
    more = f"steps={summary['steps'] + 10}"
    assert api.resume(run_dir, [more]).summary["status"] == "completed"


def test_two_processes_cannot_both_claim_one_new_directory(tmp_path):
    path = tmp_path / "run"
    first = RunDirectory.create(path, runs_root=tmp_path, label="x")
    try:
        with pytest.raises(RunDirectoryError, match="is in use by process"):
            RunDirectory.create(path, runs_root=tmp_path, label="x")
        first.write_config("steps: 1\n")
    finally:
        first.release()
    with pytest.raises(RunDirectoryError, match="already holds a run"):
        RunDirectory.create(path, runs_root=tmp_path, label="x")


def test_default_directories_claimed_at_the_same_moment_are_distinct(tmp_path):
    claimed = [RunDirectory.create(None, runs_root=tmp_path, label="same") for _ in range(5)]
    try:
        assert len({d.path for d in claimed}) == 5
    finally:
        for directory in claimed:
            directory.release()


def test_a_lock_left_by_a_killed_process_is_no_obstacle(tmp_path):
    run_dir = tmp_path / "run"
    process = _cli("run", "-q", "steps=200000", "checkpoint_every=5", f"run_dir={run_dir}", *QUIET)
    _wait_for_lock_owner(run_dir, process)
    checkpoint = run_dir / "checkpoints" / "last.pt"
    while not checkpoint.exists():
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.kill()
    process.communicate(timeout=60)
    assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == process.pid  # left behind
    trained = load_checkpoint(checkpoint)["step"]
    result = api.resume(run_dir, [f"steps={trained + 5}"])
    assert result.summary["status"] == "completed"


def test_the_lock_is_released_when_a_run_ends_however_it_ends(tmp_path):
    run_dir = tmp_path / "run"
    api.run(["steps=2", f"run_dir={run_dir}", *QUIET])
    with pytest.raises(ConfigError):
        api.resume(run_dir, ["steps=1"])  # refused after taking the lock
    with pytest.raises(ConfigError):
        api.resume(run_dir, ["method=gradcos"])  # refused before taking it
    assert api.resume(run_dir, ["steps=3"]).summary["status"] == "completed"


def test_a_killed_writers_temporary_files_are_removed_by_the_next_owner(tmp_path):
    run_dir = tmp_path / "run"
    api.run(["steps=2", f"run_dir={run_dir}", *QUIET])
    leftovers = [
        run_dir / ".summary.json.4242-0a1b2c3d.tmp",
        run_dir / "checkpoints" / ".last.pt.4242-deadbeef.tmp",
    ]
    for leftover in leftovers:
        leftover.write_bytes(b"half a file")
    keep = run_dir / "checkpoints" / "notes.tmp"  # not one of twcore's temporary files
    keep.write_text("mine")
    api.resume(run_dir, ["steps=3"])
    assert not any(p.exists() for p in leftovers) and keep.exists()


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path, capsys):
    run_dir = tmp_path / "run"
    api.run(["steps=2", f"run_dir={run_dir}", *QUIET])
    precious = tmp_path / "precious.txt"
    precious.write_text("do not truncate me")
    lock = run_dir / LOCK_FILE
    lock.unlink(missing_ok=True)
    lock.symlink_to(precious)
    assert main(["resume", str(run_dir), "steps=3"]) == 2
    err = capsys.readouterr().err
    assert "is a symbolic link" in err and err.count("\n") == 1, err
    assert precious.read_text() == "do not truncate me"


def test_a_fifo_as_lock_file_is_refused_without_hanging(tmp_path, capsys):
    run_dir = tmp_path / "run"
    api.run(["steps=2", f"run_dir={run_dir}", *QUIET])
    lock = run_dir / LOCK_FILE
    lock.unlink(missing_ok=True)
    os.mkfifo(lock)
    assert main(["resume", str(run_dir), "steps=3"]) == 2
    assert "is not a regular file" in capsys.readouterr().err


def test_resume_refuses_fewer_steps_than_already_trained_and_keeps_the_config(tmp_path, capsys):
    run_dir = tmp_path / "run"
    api.run(["steps=6", "checkpoint_every=3", f"run_dir={run_dir}", *QUIET])
    config = (run_dir / "config.yaml").read_text()
    assert main(["resume", str(run_dir), "steps=4"]) == 2
    err = capsys.readouterr().err
    assert "steps=4 is below the 6 steps" in err and err.count("\n") == 1
    assert (run_dir / "config.yaml").read_text() == config


def test_an_unwritable_run_directory_is_a_one_line_error_before_training(tmp_path, capsys):
    if os.geteuid() == 0:
        target = Path("/sys/kernel")  # exists, and not even root may create files in it
    else:
        target = tmp_path / "read-only"
        target.mkdir()
        target.chmod(0o500)
    assert main(["run", "-q", "steps=2", f"run_dir={target}", *QUIET]) == 2
    err = capsys.readouterr().err
    assert "cannot be written" in err and err.count("\n") == 1, err


def _limit_file_size(limit: int):
    def apply() -> None:
        # A file-size limit makes writes past it fail with EFBIG, as a full disk fails them
        # with ENOSPC: the same OSError path, without needing a filesystem to fill.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_fails_the_run_cleanly_keeping_the_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    settings = ["checkpoint_every=20", "log_every=100", *QUIET]
    api.run(["steps=20", f"run_dir={run_dir}", *settings])
    checkpoint = run_dir / "checkpoints" / "last.pt"
    size = checkpoint.stat().st_size
    process = _cli("resume", "-q", str(run_dir), "steps=60", preexec_fn=_limit_file_size(size // 2))
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1, err
    assert err.count("\n") == 1 and "saving a checkpoint at step 40" in err, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "File too large" in summary["error"] and "step 40" in summary["error"]
    assert summary["failure"]["plugin"] is None  # the disk, not a plugin
    assert summary["error"].startswith("OSError: [Errno 27] File too large (saving a checkpoint")
    assert load_checkpoint(checkpoint)["step"] == 20  # the last good one, intact
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["last.pt"]  # nothing leaked
    # Once there is room again the run continues from the good checkpoint.
    assert api.resume(run_dir, ["steps=60"]).summary["status"] == "completed"


def test_an_atomic_write_that_fails_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")

    def fails_halfway(handle) -> None:
        handle.write(b"new and half")
        raise RuntimeError("the writer broke")

    with pytest.raises(RuntimeError, match="the writer broke"):
        atomic_write(target, fails_halfway)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_a_worker_refused_as_bad_input_is_not_retried_and_says_why(tmp_path):
    sweep_dir = tmp_path / "sweep"
    trial = sweep_dir / "seed-0"
    trial.mkdir(parents=True)
    held = RunLock.acquire(trial)  # another process is using this trial's directory
    try:
        result = run_sweep(
            ["seed=0,1", "steps=2", f"run_dir={sweep_dir}", *QUIET],
            options=SweepOptions(backend="local", workers=1, retries=2, threads=1),
        )
    finally:
        held.release()
    by_name = {t.name: t for t in result.trials}
    assert by_name["seed-1"].status == "completed"
    refused = by_name["seed-0"]
    assert refused.status == "failed" and refused.attempts == 1
    assert f"is in use by process {os.getpid()}" in refused.error


def test_without_flock_the_recorded_owner_decides(tmp_path, monkeypatch):
    """On a filesystem without flock: a live owner's lock is refused, a released or dead one's
    is taken, and the same process can lock again after releasing."""
    import twcore.orchestration.engine.lock as lock_module

    def no_flock(descriptor, operation):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(lock_module.fcntl, "flock", no_flock)
    directory = tmp_path / "run"
    directory.mkdir()
    first = RunLock.acquire(directory)
    with pytest.raises(RunDirectoryError, match=f"in use by process {os.getpid()}"):
        RunLock.acquire(directory)
    first.release()
    again = RunLock.acquire(directory)  # released: the emptied file names no owner
    again.release()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (directory / LOCK_FILE).write_text(
        json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()})
    )
    RunLock.acquire(directory).release()  # its owner has exited: stale, taken over


def test_a_hard_linked_lock_file_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    api.run(["steps=2", f"run_dir={run_dir}", *QUIET])
    precious = tmp_path / "precious.txt"
    precious.write_text("do not truncate me")
    (run_dir / LOCK_FILE).unlink(missing_ok=True)
    os.link(precious, run_dir / LOCK_FILE)
    assert main(["resume", str(run_dir), "steps=3"]) == 2
    assert "a hard link to another file" in capsys.readouterr().err
    assert precious.read_text() == "do not truncate me"
