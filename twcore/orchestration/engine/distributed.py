"""Data-parallel runs: the process group, the agreement between processes, and the launcher.

A data-parallel run is ``nproc`` processes started by ``torchrun`` (or by ``nproc=N``, which
starts it), each running the same program on the same global batches; the model's trunk is
split over them (:func:`twcore.autodiff.data_parallel.shard_module`), so every method sees the
global losses and gradients. Process 0 alone writes: the run directory, checkpoints,
``summary.json`` and the W&B run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from twcore.autodiff.data_parallel import ProcessGroup, flag_in_any_process
from twcore.contract.errors import ConfigError
from twcore.orchestration.engine.threads import usable_cores
from twcore.orchestration.tracking.provenance import command_environment

LAUNCHED_VARIABLE = "TWCORE_DATA_PARALLEL"
"""Set in the processes the launcher starts, so they do not launch again."""

TIMEOUT_VARIABLE = "TWCORE_DISTRIBUTED_TIMEOUT_S"
"""Seconds a collective may wait for the other processes (default 600)."""


@dataclass(frozen=True)
class World:
    """This process's place in the run: its rank, the number of processes, its local rank."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def writes(self) -> bool:
        """Whether this process writes the run's files and trackers (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def process_group(self) -> ProcessGroup:
        return ProcessGroup(self.rank, self.size)


_world = World()
_meet_at_exit = False
"""Whether this process's last run of several processes completed (see :func:`leave_world`)."""


def launched_world_size() -> int:
    """The number of processes ``torchrun`` started (1 when not started by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_world_rank() -> int:
    """This process's rank among those ``torchrun`` started (0 when not started by it)."""
    return int(os.environ.get("RANK", "0"))


def prints_results() -> bool:
    """Whether this process reports a run's result on the console: not the processes of a
    data-parallel run, except process 0 of one started by torchrun directly (a launch by
    ``nproc`` reports from the launching process)."""
    return launched_world_rank() == 0 and LAUNCHED_VARIABLE not in os.environ


def join_world(nproc: int, device: torch.device) -> tuple[World, torch.device]:
    """Join the process group ``torchrun`` describes (gloo on CPU, NCCL on CUDA) and return the
    world and this process's device (``cuda:LOCAL_RANK`` on CUDA).

    ConfigError if ``nproc`` disagrees with the number of processes started.
    """
    global _world
    size = launched_world_size()
    if nproc not in (1, size):
        raise ConfigError(
            f"nproc={nproc} but {size} process(es) were started; give nproc={size} or leave "
            "nproc out under torchrun"
        )
    if size == 1:
        _world = World()
        return _world, device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device.index is not None:
            raise ConfigError(
                f"device={device} in a run of {size} processes: each process takes the GPU of "
                "its local rank; give device=cuda (or auto)"
            )
        if torch.cuda.device_count() < local_rank + 1:
            raise ConfigError(
                f"nproc={size} needs one GPU per process and this machine has "
                f"{torch.cuda.device_count()}"
            )
        device = process_device(device)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ConfigError(f"device={device}: data-parallel runs use CPU (gloo) or CUDA (NCCL)")
    if not dist.is_initialized():
        atexit.register(_destroy_process_group)
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            timeout=timedelta(seconds=float(os.environ.get(TIMEOUT_VARIABLE, "600"))),
            device_id=device if device.type == "cuda" else None,
        )
    _world = World(rank=rank, size=size, local_rank=local_rank)
    return _world, device


def leave_world(*, completed: bool = False) -> None:
    """End this run's part in the world (idempotent). The process group itself lives until the
    process exits, so that several runs in one launched process (a script calling
    ``twcore.run`` in turn) reuse it instead of racing to set up a new one. `completed`: the
    run ended without an error in this process (then the processes meet before the group is
    torn down at exit; after an error this one tears down at once, so that the others notice
    at their next collective)."""
    global _world, _meet_at_exit
    if _world.distributed:
        _meet_at_exit = completed
    _world = World()


EXIT_BARRIER_TIMEOUT = timedelta(seconds=10)
"""How long a gloo process waits at exit for the others before it tears its group down anyway."""


def _destroy_process_group() -> None:
    """Tear the process group down at exit; after a completed run, once every process has got
    there (gloo).

    Without the barrier the first process to finish (any but process 0, which still writes the
    run's files) closed its connections while the others' were still open, and its C++ side
    could rarely abort ("terminate called without an active exception") after a complete run.
    A peer that exited already makes the barrier fail at once, and the teardown goes on
    regardless. A process whose run failed does not wait (gloo's barrier times out on process 0
    only; the others would wait the group's whole timeout). NCCL's teardown needs no barrier."""
    if not dist.is_initialized():
        return
    if _meet_at_exit and dist.get_backend() == "gloo" and dist.get_world_size() > 1:
        with contextlib.suppress(Exception):  # a lost peer: tear down regardless
            dist.monitored_barrier(timeout=EXIT_BARRIER_TIMEOUT)
    dist.destroy_process_group()


def any_process(flag: bool, device: torch.device) -> bool:
    """Whether `flag` is true in any process (a stop request, a failure); the flag itself in a
    single process."""
    return flag_in_any_process(flag, device) if _world.distributed else flag


def broadcast_text(text: str | None, device: torch.device) -> str:
    """Process 0's `text`, in every process (a UTF-8 byte tensor; nothing is unpickled)."""
    if not _world.distributed:
        return text or ""
    data = torch.tensor(list((text or "").encode()), dtype=torch.uint8, device=device)
    length = torch.tensor([data.numel()], device=device)
    dist.broadcast(length, src=0)
    buffer = data if _world.writes else torch.empty(int(length), dtype=torch.uint8, device=device)
    dist.broadcast(buffer, src=0)
    return bytes(buffer.cpu().tolist()).decode()


LOST_PROCESS_SIGNS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe")


def lost_a_process(exc: BaseException) -> str:
    """How a collective failed because another process of the run died ("" if `exc` is
    something else; gloo reports it as a RuntimeError, NCCL as a DistError)."""
    if isinstance(exc, dist.DistError):
        return type(exc).__name__
    if isinstance(exc, RuntimeError):
        return next((sign.lower() for sign in LOST_PROCESS_SIGNS if sign in str(exc)), "")
    return ""


def needs_launch(nproc: int) -> bool:
    """Whether a run with ``nproc`` processes must start them (not yet started by torchrun)."""
    return nproc > 1 and launched_world_size() == 1 and LAUNCHED_VARIABLE not in os.environ


def launch_environment(nproc: int) -> dict[str, str]:
    """The environment of a launched run's processes: this one's, marked as launched, with
    cores ÷ nproc threads each unless OMP_NUM_THREADS is set."""
    env = dict(os.environ)
    env[LAUNCHED_VARIABLE] = "1"
    env.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // nproc)))
    return env


def process_device(device: torch.device) -> torch.device:
    """The device of this process of a launched run: ``cuda:LOCAL_RANK`` for a CUDA run of
    several processes (one GPU each), `device` otherwise."""
    if device.type == "cuda" and launched_world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def launch(
    nproc: int,
    twcore_args: list[str],
    *,
    overrides: list[str] | None = None,
    config_file: str | None = None,
) -> int:
    """Run ``twcore <twcore_args>`` as `nproc` processes under ``torchrun`` on this machine and
    return its exit code. Each process gets cores ÷ nproc threads unless OMP_NUM_THREADS is
    set. `overrides` and `config_file` are what the run was asked with, for its provenance
    (the processes may get them another way, e.g. as a composed config file)."""
    env = {**launch_environment(nproc), **command_environment(overrides, config_file)}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "twcore",
        *twcore_args,
    ]
    process = subprocess.Popen(command, env=env)
    forwarded = {signal.SIGINT, signal.SIGTERM}

    def forward(signum: int, frame: object) -> None:
        # torchrun stops its processes (SIGTERM, then SIGKILL after 30 s); they agree on a step,
        # checkpoint and record "interrupted"; this process keeps waiting for them.
        process.send_signal(signum)

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, forward) for s in forwarded} if in_main_thread else {}
    try:
        return process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
