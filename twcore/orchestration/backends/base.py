"""The backend interface and the options every backend understands."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from twcore.contract.errors import ConfigError
from twcore.orchestration.engine.threads import usable_cores


@dataclass
class SweepOptions:
    """How a sweep runs its trials.

    Attributes:
        backend: ``serial`` (one after another in this process), ``local`` (worker processes on
            this machine) or ``ray`` (tasks on a Ray cluster).
        workers: trials at once (local, and the size of a Ray cluster started for the sweep).
        retries: further attempts for a trial whose process crashed or was killed; each resumes
            from the trial's last checkpoint.
        threads: torch threads per trial; default: the machine's cores ÷ workers (at least 1).
        ray_address: a Ray cluster to join (``auto``, or ``host:port``); None starts a local one.
        show_progress: show each trial's progress bar (the serial backend; workers are quiet).
        cold_start: start each local worker as a fresh ``python -m twcore`` process instead
            of forking it from one that has imported torch, W&B and twcore already (the local
            backend; Ray's workers always start fresh).
    """

    backend: str = "serial"
    workers: int = 2
    retries: int = 1
    threads: int | None = None
    ray_address: str | None = None
    show_progress: bool = False
    cold_start: bool = False

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: must be at least 1")
        if self.retries < 0:
            raise ConfigError(f"--retries {self.retries}: must be 0 or more")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads {self.threads}: must be at least 1")

    @property
    def threads_per_trial(self) -> int:
        """Torch threads each trial gets."""
        if self.threads is not None:
            return self.threads
        parallel = 1 if self.backend == "serial" else self.workers
        return max(1, usable_cores() // parallel)


@dataclass
class TrialJob:
    """One trial as a backend sees it: a composed configuration written to a file, its run
    directory, the log of its worker processes and the file holding the running worker's pid."""

    name: str
    run_dir: Path
    config_path: Path
    log_path: Path
    pid_path: Path
    description: str
    composed: Any = field(default=None, repr=False)
    callback_spec: str | None = field(default=None, repr=False)
    """Callbacks the trial's run gets, as JSON text (:mod:`~twcore.orchestration.backends.
    trial_callbacks`): plain data, so it reaches a worker process or a Ray task unchanged."""


@dataclass
class TrialOutcome:
    """How a trial ended: its status, the error if any, attempts made and its summary."""

    status: str
    error: str | None = None
    attempts: int = 0
    summary: dict[str, Any] | None = None


OnOutcome = Callable[[TrialJob, TrialOutcome], None]


class Backend(ABC):
    """Runs a list of trial jobs and reports each outcome as it arrives."""

    name: ClassVar[str]

    def __init__(self, options: SweepOptions) -> None:
        self.options = options

    def check_plugins(self, jobs: Sequence[TrialJob]) -> None:
        """ConfigError, before any trial starts, if the processes that run the trials would
        not know a plugin they use (default: they run in this process, which does)."""

    @abstractmethod
    def run(self, jobs: Iterable[TrialJob], on_outcome: OnOutcome) -> None:
        """Run `jobs`; call ``on_outcome(job, outcome)`` for each as it finishes. On Ctrl-C,
        stop the trials cleanly (they checkpoint) and raise KeyboardInterrupt.

        `jobs` is read lazily, the next job only when a worker is free, so a search can choose
        each trial from the results of those before it (``twcore tune``)."""
