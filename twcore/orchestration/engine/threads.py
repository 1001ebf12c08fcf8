"""How many torch threads a run computes with (the run-level ``threads`` option).

On a shared machine torch's default — one intra-op thread per core — can slow a run tens of
times: when other processes keep the cores busy, the threads of one op wait on each other. A
run therefore chooses its threads before any tensor work:

- ``threads=N`` (a whole number ≥ 1): N, as asked;
- ``threads=auto`` (the default), in this order:
  1. a choice made outside the run: ``OMP_NUM_THREADS`` in the environment (set by a user, by
     ``torchrun``'s launcher or by a sweep's worker), the threads a sweep's serial backend or
     ``twcore bench --threads`` pinned for its runs, or ``torch.set_num_threads`` called by the
     program after it imported twcore (a script's ``--threads``);
  2. 1 when the machine is oversubscribed at the start: the 1-minute load average, or the
     processes runnable right now (besides this one), above the cores this process may use —
     with a one-line warning saying so;
  3. otherwise the cores this process may use (its CPU affinity, capped by a cgroup CPU quota),
     at most :data:`MAX_AUTO_THREADS`.

The choice is recorded in the run's ``summary.json`` (``threads``) and W&B summary, and torch's
previous setting is restored when the run ends (a run inside a larger program leaves it as it
found it).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from twcore.contract.errors import ConfigError

AUTO = "auto"
BUSY = "the machine is busy"
MAX_AUTO_THREADS = 16
"""Beyond this many cores, more intra-op threads do not speed up the small models a run of
this framework trains; ``threads=N`` goes higher."""

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")

_pinned: list[int] = []
_TORCH_AT_IMPORT = torch.get_num_threads()
"""Torch's threads when twcore's engine was imported: a different number later was set by
the program running twcore (``torch.set_num_threads``), which ``auto`` keeps."""


@dataclass(frozen=True)
class ThreadChoice:
    """The threads a run uses and why.

    Attributes:
        setting: the ``threads`` option as given (``auto`` or a number).
        threads: the torch intra-op threads used.
        reason: why, in words.
        cores: the cores this process may use.
        load: the machine's load at the start (the larger of the 1-minute load average and
            the other runnable processes), None where unknown.
    """

    setting: str
    threads: int
    reason: str
    cores: int
    load: float | None

    @property
    def oversubscribed(self) -> bool:
        return self.load is not None and self.load > self.cores

    def record(self) -> dict[str, object]:
        """What ``summary.json`` keeps."""
        return asdict(self)


def parse_setting(value: object) -> int | None:
    """The number of threads a ``threads`` option asks for, or None for ``auto``; ConfigError
    naming the key for anything else."""
    text = str(value).strip().lower()
    if text == AUTO:
        return None
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1 or str(number) != text:
        raise ConfigError(f"threads={value}: give auto or a whole number of threads, 1 or more")
    return number


def usable_cores(cgroup_cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The cores this process may run on: its CPU affinity (all cores where the platform has
    none), capped by a cgroup v2 CPU quota (``cpu.max``: quota ÷ period, rounded up)."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS, Windows
        cores = os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError):
        quota, period = cgroup_cpu_max.read_text(encoding="utf-8").split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    return max(1, cores)


def machine_load(loadavg: Path = Path("/proc/loadavg")) -> float | None:
    """The larger of the 1-minute load average and the processes runnable now besides this
    one (``/proc/loadavg``), or the load average alone where that file is missing; None where
    neither is known."""
    try:
        fields = loadavg.read_text(encoding="utf-8").split()
        runnable = int(fields[3].split("/")[0]) - 1  # this process is one of them
        return max(float(fields[0]), float(runnable))
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # pragma: no cover - no load average on this platform
        return None


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Within this context, runs with ``threads=auto`` use `threads` (a sweep's backend
    deciding for its trials)."""
    _pinned.append(threads)
    try:
        yield
    finally:
        _pinned.pop()


def choose_threads(
    setting: object,
    *,
    environ: Mapping[str, str] | None = None,
    cores: Callable[[], int] | None = None,
    load: Callable[[], float | None] | None = None,
) -> ThreadChoice:
    """The threads a run with this ``threads`` option uses (see the module docstring);
    `environ`, `cores` and `load` default to this process's."""
    asked = parse_setting(setting)
    environment = os.environ if environ is None else environ
    available = (cores or usable_cores)()
    measured = (load or machine_load)()
    text = str(setting)

    def choice(threads: int, reason: str) -> ThreadChoice:
        return ThreadChoice(text, threads, reason, available, measured)

    if asked is not None:
        return choice(asked, "threads as set")
    omp = environment.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:
        return choice(int(omp), "OMP_NUM_THREADS")
    if _pinned:
        return choice(_pinned[-1], "pinned by the caller (a sweep's backend, twcore bench)")
    current = torch.get_num_threads()
    if current != _TORCH_AT_IMPORT:
        return choice(current, "torch.set_num_threads in this program")
    if measured is not None and measured > available:
        return choice(1, f"{BUSY} (load {measured:.1f} on {available} cores)")
    return choice(min(available, MAX_AUTO_THREADS), f"the {available} usable cores")


@contextlib.contextmanager
def run_threads(choice: ThreadChoice) -> Iterator[None]:
    """Torch computes with the chosen threads within this context; its previous setting is
    restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(choice.threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def busy_warning(choice: ThreadChoice) -> str | None:
    """The one-line warning when ``auto`` backed off to 1 thread on a busy machine, or None
    (a choice made outside the run is not second-guessed)."""
    if not (choice.setting == AUTO and choice.reason.startswith(BUSY)):
        return None
    return (
        f"the machine is busy (load {choice.load:.1f} on {choice.cores} usable cores): this run "
        f"uses {choice.threads} torch thread(s) ({choice.reason}; threads=N chooses)"
    )
