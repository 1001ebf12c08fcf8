"""Starting trial workers warm: forked from one process that has imported torch, W&B and twcore.

A fresh ``python -m twcore`` process spends seconds importing before its first step (about 7 s
on a slow 2-core machine, longer than many trials train), and a sweep pays that for every trial.
:class:`WarmStarter` starts one :mod:`~twcore.orchestration.backends.zygote` process per sweep,
which imports them once and forks a child per trial; each child is still a process of its own
(its own session, environment, log and exit code, killed or crashed without touching the
others), so the sweep's retries, resumes and Ctrl-C handling are unchanged. The handles it
returns answer as :class:`subprocess.Popen` does where a trial's attempt uses it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from twcore.orchestration.engine.lock import process_alive

ZYGOTE_MODULE = "twcore.orchestration.backends.zygote"
"""The module the zygote runs as (``python -m``)."""
LOST_CODE = 1
"""The exit code of a child whose zygote died before reporting it (unknown: a crash, so the
trial's summary decides, as for any process that ended without a verdict)."""
START_TIMEOUT_S = 300.0
"""How long a request waits for the zygote's answer (its first one includes the imports)."""


class WarmProcess:
    """One trial's worker forked by the zygote, with the parts of :class:`subprocess.Popen`'s
    interface a trial's attempt uses (``pid``, ``poll``, ``wait``, ``send_signal``, ``kill``)."""

    def __init__(self, pid: int, starter: WarmStarter) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.orphaned = False
        """Whether it ended after its zygote died, unreported (its exit code is then
        :data:`LOST_CODE`, and a ``stopped`` status its own reaction to being orphaned)."""
        self._ended = threading.Event()
        self._starter = starter

    def poll(self) -> int | None:
        """The exit code, or None while the worker runs."""
        if not self._ended.is_set() and self._starter.lost and not _alive(self.pid):
            self.orphaned = True
            self._end(LOST_CODE)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the worker to end; its exit code (``subprocess.TimeoutExpired`` after
        `timeout` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"warm worker {self.pid}", timeout or 0.0)
            self._ended.wait(0.2 if left is None else min(left, 0.2))
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Send `sig` to the worker, if it still runs."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the worker."""
        self.send_signal(signal.SIGKILL)

    def _end(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
        self._ended.set()


class WarmStarter:
    """The zygote of one sweep: :meth:`start` forks a trial's ``twcore`` command from it.

    Use it as a context manager: the zygote starts on the first :meth:`start` and stops on
    exit (workers still running are left to finish; each watches its sweep's process). If the
    zygote cannot start, does not answer, or dies, :attr:`lost` turns true, :meth:`start`
    raises OSError, and the workers it forked stop at their next step (each watches the
    zygote), their handles then reporting themselves :attr:`~WarmProcess.orphaned`.
    """

    def __init__(self, environment: Mapping[str, str] | None = None) -> None:
        """`environment`: the zygote's (default: this process's); give it the workers', so
        that the native thread pools its imports size (OpenBLAS's, from ``OMP_NUM_THREADS``)
        are a fresh worker's."""
        self._environment = environment
        self._lock = threading.Lock()  # the tables below and the zygote's handle
        self._write_lock = threading.Lock()  # one request written at a time
        self._zygote: subprocess.Popen[bytes] | None = None
        self._next_id = 0
        self._waiting: dict[int, tuple[threading.Event, dict[str, Any]]] = {}
        self._running: dict[int, WarmProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._killed_late: set[int] = set()
        self._given_up = not warm_start_available()
        self.lost = False

    @property
    def usable(self) -> bool:
        """Whether :meth:`start` is worth trying (not given up, the zygote not lost)."""
        return not (self._given_up or self.lost)

    def give_up(self) -> bool:
        """Stop trying to start warm (the caller starts fresh processes); True the first time,
        so that one warning says why."""
        with self._lock:
            first, self._given_up = not self._given_up, True
        return first

    def __enter__(self) -> WarmStarter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(
        self, argv: Sequence[str], log_path: Path, environment: Mapping[str, str]
    ) -> WarmProcess:
        """Fork ``twcore ARGV`` with `environment`, this directory, and `log_path` appended to
        as its stdout and stderr. Raises OSError if the zygote cannot start, answer or fork."""
        answered = threading.Event()
        answer: dict[str, Any] = {}
        with self._lock:
            if self.lost:
                raise OSError("the warm-start process has ended")
            zygote = self._ensure_zygote()
            request_id = self._next_id
            self._next_id += 1
            self._waiting[request_id] = (answered, answer)
        request = {
            "id": request_id,
            "argv": list(argv),
            "env": dict(environment),
            "cwd": os.getcwd(),
            "log": str(log_path),
        }
        try:
            with self._write_lock:
                _write(zygote, (json.dumps(request) + "\n").encode(), START_TIMEOUT_S)
        except OSError as exc:
            raise self._abandon(f"cannot send it a request: {exc}") from exc
        if not answered.wait(START_TIMEOUT_S):
            raise self._abandon(f"no answer in {START_TIMEOUT_S:.0f} s")
        if "pid" not in answer:
            raise OSError(answer.get("error", "the warm-start process has ended"))
        return self._handle(int(answer["pid"]))

    def close(self) -> None:
        """Stop the zygote (its stdin closes; running workers are left to finish)."""
        with self._lock:
            zygote, self._zygote = self._zygote, None
        if zygote is None:
            return
        if zygote.stdin is not None:
            with contextlib.suppress(OSError):
                zygote.stdin.close()
        try:
            zygote.wait(timeout=10)
        except subprocess.TimeoutExpired:
            zygote.kill()
            zygote.wait()

    def _ensure_zygote(self) -> subprocess.Popen[bytes]:
        if self._zygote is not None:
            return self._zygote
        zygote = subprocess.Popen(
            [sys.executable, "-m", ZYGOTE_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
            env=None if self._environment is None else dict(self._environment),
            start_new_session=True,  # Ctrl-C in the terminal reaches the sweep alone
        )
        assert zygote.stdin is not None
        os.set_blocking(zygote.stdin.fileno(), False)  # a write that cannot finish times out
        self._zygote = zygote
        threading.Thread(
            target=self._read_replies, args=(zygote,), name="twcore-zygote", daemon=True
        ).start()
        return zygote

    def _abandon(self, reason: str) -> OSError:
        """Give the zygote up for lost, and kill it (a late fork must not race the fresh
        process that replaces it); the error to raise."""
        with self._lock:
            self.lost = True
            zygote = self._zygote
        if zygote is not None and zygote.poll() is None:
            zygote.kill()
        return OSError(f"the warm-start process was given up: {reason}")

    def _handle(self, pid: int) -> WarmProcess:
        with self._lock:
            process = WarmProcess(pid, self)
            if pid in self._early_exits:  # it ended before this thread took its answer
                process._end(self._early_exits.pop(pid))
            else:
                self._running[pid] = process
            return process

    def _read_replies(self, zygote: subprocess.Popen[bytes]) -> None:
        assert zygote.stdout is not None
        try:
            for line in zygote.stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    self._take(message)
        finally:  # the zygote ended (or this thread failed): nothing more will be reported
            with self._lock:
                self.lost = True
                for answered, _ in self._waiting.values():
                    answered.set()
                self._waiting.clear()

    def _take(self, message: dict[str, Any]) -> None:
        with self._lock:
            if "id" in message:
                answered, answer = self._waiting.pop(message["id"], (None, {}))
                if answered is None:  # its request was given up: the late worker must go
                    if "pid" in message:
                        self._killed_late.add(int(message["pid"]))
                        with contextlib.suppress(OSError):
                            os.kill(int(message["pid"]), signal.SIGKILL)
                    return
                answer.update(message)
                answered.set()
            elif "pid" in message:
                if message["pid"] in self._killed_late:  # never handed out
                    self._killed_late.discard(message["pid"])
                    return
                process = self._running.pop(message["pid"], None)
                if process is None:
                    self._early_exits[message["pid"]] = int(message["code"])
                else:
                    process._end(int(message["code"]))


def _write(zygote: subprocess.Popen[bytes], data: bytes, timeout_s: float) -> None:
    """Write `data` to the zygote's non-blocking stdin within `timeout_s` (OSError if not)."""
    assert zygote.stdin is not None
    descriptor = zygote.stdin.fileno()
    deadline = time.monotonic() + timeout_s
    while data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise OSError(f"its input stayed full for {timeout_s:.0f} s")
        _, writable, _ = select.select([], [descriptor], [], min(left, 1.0))
        if writable:
            try:
                data = data[os.write(descriptor, data) :]
            except BlockingIOError:
                continue


def _alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie, never reaped after its zygote died, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return process_alive(pid)
    return state.rsplit(")", 1)[-1].split()[0] != "Z"


def warm_start_available() -> bool:
    """Whether this platform forks warm workers: Linux (macOS's system libraries are not safe
    to use in a child forked after torch's import; Windows cannot fork)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")
