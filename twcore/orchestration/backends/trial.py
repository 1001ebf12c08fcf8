"""Running one trial in a worker process: start it, resume it after a crash, retry.

A trial is a run directory plus the composed configuration written to a YAML file. An attempt
runs ``python -m twcore run --config FILE`` the first time and ``python -m twcore resume
RUN_DIR`` once the run directory exists, so an attempt after a crash or a killed worker
continues from the last checkpoint (or from step 0 if there was none yet). A trial is retried
only when its process died without a verdict: a completed, diverged or user-interrupted run is
final. Everything here is picklable, so a Ray task can call :func:`execute_trial` as is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

from twcore.orchestration.backends.base import TrialJob, TrialOutcome
from twcore.orchestration.backends.trial_callbacks import CALLBACKS_ENV, PARENT_ENV, WORKER_ENV
from twcore.orchestration.backends.warm_start import WarmStarter
from twcore.orchestration.console import warn
from twcore.orchestration.engine.rundir import RunDirectory
from twcore.orchestration.engine.summary import FINISHED_STATUSES, finished
from twcore.orchestration.user_plugins import check_workers_see

FINAL_STATUSES = (*FINISHED_STATUSES, "diverged", "interrupted", "stopped")
"""Statuses that are a run's verdict: a crash is retried, these are not (``stopped``: by a
callback, e.g. a tune's pruner)."""
USAGE_ERROR = 2
"""A worker's exit code for bad input: retrying cannot help, so the trial fails at once."""
ERROR_PREFIX = "twcore: error: "


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The trial's ``summary.json``, or None if there is none (or it is unreadable)."""
    try:
        return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def completed_summary(run_dir: Path) -> dict[str, Any] | None:
    """The summary of a trial that already finished training (a re-run sweep skips it)."""
    summary = read_summary(run_dir)
    return summary if summary is not None and finished(summary.get("status")) else None


def last_error_line(log_path: Path) -> str | None:
    """The message of the last ``twcore: error:`` line a worker wrote to its log, if any."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    errors = [line[len(ERROR_PREFIX) :] for line in lines if line.startswith(ERROR_PREFIX)]
    return errors[-1] if errors else None


def has_started(run_dir: Path) -> bool:
    """Whether an earlier attempt created the run, so the next one resumes it."""
    return RunDirectory(run_dir).config_path.exists()


def attempt_arguments(job: TrialJob) -> list[str]:
    """The ``twcore`` arguments of the next attempt: a fresh run, or a resume once the run
    exists."""
    if has_started(job.run_dir):
        return ["resume", str(job.run_dir), "-q"]
    return ["run", "--config", str(job.config_path), "-q"]


def attempt_command(job: TrialJob) -> list[str]:
    """The command line of the next attempt (``python -m twcore ARGUMENTS``)."""
    return [sys.executable, "-m", "twcore", *attempt_arguments(job)]


class WorkerProcess(Protocol):
    """A trial's worker process: a :class:`subprocess.Popen`, or a warm-started
    :class:`~twcore.orchestration.backends.warm_start.WarmProcess`."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


def worker_environment(threads: int) -> dict[str, str]:
    """The environment of a trial's process: this one's (the named plugin modules and the
    ``PYTHONPATH`` that finds them included), with `threads` torch threads."""
    environment = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        environment[key] = str(threads)
    environment[WORKER_ENV] = "1"
    environment.pop(CALLBACKS_ENV, None)
    return environment


def job_environment(job: TrialJob, environment: Mapping[str, str]) -> dict[str, str]:
    """`environment` with this process as the worker's parent, and the job's callback spec."""
    merged = dict(environment)
    merged[PARENT_ENV] = str(os.getpid())
    if job.callback_spec:
        merged[CALLBACKS_ENV] = job.callback_spec
    return merged


def check_workers_know(
    jobs: Sequence[TrialJob], environment: Mapping[str, str], backend: str
) -> None:
    """ConfigError before any trial starts if a worker with `environment` would not know a
    plugin the `jobs` use (:func:`~twcore.orchestration.plugin_modules.check_workers_see`)."""
    registrations = [
        registration
        for job in jobs
        if job.composed is not None
        for registration in job.composed.plugins.values()
    ]
    check_workers_see(registrations, environment, backend=backend)


class LiveProcesses:
    """The worker processes now running, so that Ctrl-C can stop them cleanly."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: set[WorkerProcess] = set()
        self.stopping = False

    def add(self, process: WorkerProcess) -> None:
        """Track `process`; one started after Ctrl-C (a warm start waits for the zygote's
        imports) is sent its SIGINT at once."""
        with self._lock:
            self._processes.add(process)
            if self.stopping and process.poll() is None:
                process.send_signal(signal.SIGINT)

    def discard(self, process: WorkerProcess) -> None:
        with self._lock:
            self._processes.discard(process)

    def interrupt_all(self, grace_s: float = 30.0) -> None:
        """SIGINT every worker (each checkpoints and stops), then kill any still running."""
        with self._lock:  # a worker added from now on is signalled by add, not here
            self.stopping = True
            processes = list(self._processes)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_for_earlier_worker(job: TrialJob, *, timeout_s: float = 120.0) -> None:
    """Wait for a worker an earlier, killed sweep or tune left running on `job` (its pid file
    outlived its parent): it stops at its next step once it sees its parent gone, and the
    next attempt must not race it for the run directory."""
    try:
        pid = int(job.pid_path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + timeout_s
    while _is_worker(pid) and time.monotonic() < deadline:
        time.sleep(0.2)


def _is_worker(pid: int) -> bool:
    """Whether `pid` is a live twcore process (not a pid the system has since reused): a
    fresh ``python -m twcore``, or a warm worker, whose command line is its zygote's
    (``python -m twcore.orchestration.backends.zygote``)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"twcore" in command


def execute_trial(
    job: TrialJob,
    *,
    retries: int,
    environment: Mapping[str, str],
    live: LiveProcesses | None = None,
    starter: WarmStarter | None = None,
) -> TrialOutcome:
    """Run `job` to a final status, with up to `retries` further attempts after a crash; each
    attempt forked by `starter` (warm: torch and twcore already imported), or a fresh
    ``python -m twcore`` process without one."""
    wait_for_earlier_worker(job)
    outcome = TrialOutcome(status="failed", error="not started")
    for attempt in range(1, retries + 2):
        outcome.attempts = attempt
        if live is not None and live.stopping:
            if attempt == 1:  # never started: it stays pending, a re-run sweep runs it
                return TrialOutcome(status="pending")
            outcome.status, outcome.error = "interrupted", "interrupted by the user"
            return outcome
        returncode, orphaned = _attempt(job, environment, live, attempt, starter)
        summary = read_summary(job.run_dir)
        status = summary.get("status") if summary else None
        outcome.summary = summary
        # A warm worker whose forking process died stopped itself as orphaned: not a verdict.
        verdict = not (orphaned and status == "stopped")
        if status in FINAL_STATUSES and returncode in (0, 1, 130) and verdict:
            outcome.status = str(status)
            outcome.error = summary.get("error") if summary else None
            return outcome
        if live is not None and live.stopping:
            outcome.status, outcome.error = "interrupted", "interrupted by the user"
            return outcome
        if returncode == USAGE_ERROR:  # bad input (a lock in use, a refused resume): final
            outcome.status = "failed"
            outcome.error = last_error_line(job.log_path) or f"exit code 2 (log {job.log_path})"
            return outcome
        died = f"signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
        if orphaned:
            died = "its warm-start process lost"
        outcome.status = "failed"
        outcome.error = f"worker process ended with {died} (attempt {attempt}; log {job.log_path})"
    return outcome


def _attempt(
    job: TrialJob,
    environment: Mapping[str, str],
    live: LiveProcesses | None,
    attempt: int,
    starter: WarmStarter | None,
) -> tuple[int, bool]:
    """One attempt's exit code, and whether it was a warm worker whose forking process died
    (so that its status says nothing about the trial)."""
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    command = attempt_command(job)
    with job.log_path.open("a", encoding="utf-8") as log:
        warm = " (forked warm)" if starter is not None and starter.usable else ""
        log.write(f"--- attempt {attempt}: {' '.join(command)}{warm}\n")
        log.flush()
        process = _start(job, log, job_environment(job, environment), starter)
        job.pid_path.parent.mkdir(parents=True, exist_ok=True)
        job.pid_path.write_text(str(process.pid), encoding="utf-8")
        if live is not None:
            live.add(process)
        try:
            return process.wait(), bool(getattr(process, "orphaned", False))
        except BaseException:  # cancelled (Ray) or interrupted: stop the worker cleanly first
            _stop(process)
            raise
        finally:
            if live is not None:
                live.discard(process)
            job.pid_path.unlink(missing_ok=True)


def _start(
    job: TrialJob, log: TextIO, environment: dict[str, str], starter: WarmStarter | None
) -> WorkerProcess:
    """The attempt's worker: forked by `starter` where it works, else a fresh process."""
    if starter is not None and starter.lost and starter.give_up():
        warn("the warm-start process ended; trials start as fresh processes")
    if starter is not None and starter.usable:
        try:
            return starter.start(attempt_arguments(job), job.log_path, environment)
        except OSError as exc:
            log.write(f"--- warm start failed ({exc}): a fresh process instead\n")
            log.flush()
            if starter.give_up():
                warn(f"warm start failed ({exc}); trials start as fresh processes")
    return subprocess.Popen(
        attempt_command(job),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environment,
        # Its own session: a Ctrl-C in the terminal reaches the sweep, which forwards one
        # SIGINT to each worker (a second one would abort it without a checkpoint).
        start_new_session=True,
    )


def _stop(process: WorkerProcess, grace_s: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
