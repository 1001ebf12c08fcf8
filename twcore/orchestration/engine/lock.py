"""An exclusive lock on a run directory, held for the life of a run.

Two processes must never train into one directory: two ``twcore resume`` of one run would both
write its checkpoint, its summary and one W&B run id, and two new runs could both claim an empty
directory between a check and a create. The lock is a file ``.lock`` in the directory, locked
with ``flock`` (released by the kernel when its holder exits, however it exits: a lock left by a
killed process is never in the way) and holding the owner's pid, host and start time for the
message the next process gets. On a filesystem without ``flock`` the pid is the fallback: a lock
file whose process no longer runs on this host is stale and taken over.

A run directory may come from someone else, so the lock file is opened without following a
symlink and without blocking, and must be a regular file: a ``.lock`` pointing at one of your
files, or a FIFO, is refused rather than written through or waited on.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import time
from pathlib import Path

from twcore.contract.errors import RunDirectoryError

try:
    import fcntl
except ImportError:  # not POSIX: the pid fallback alone
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


class RunLock:
    """An acquired lock on one directory; :meth:`release` (or process exit) frees it."""

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path
        self._descriptor: int | None = descriptor

    @classmethod
    def acquire(cls, directory: Path) -> RunLock:
        """Lock `directory` (which must exist) for this process.

        Raises:
            RunDirectoryError: another live process holds the lock (the message names its pid,
                host and start time), the lock file is not a regular file, or the directory
                cannot be written.
        """
        path = directory / LOCK_FILE
        try:
            descriptor = os.open(path, _OPEN_FLAGS, 0o644)
        except OSError as exc:
            if path.is_symlink():
                raise RunDirectoryError(_not_a_file(path, "a symbolic link")) from exc
            raise RunDirectoryError(
                f"run_dir={directory} cannot be written ({exc.strerror}); choose a directory "
                "you can write to"
            ) from exc
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                raise RunDirectoryError(_not_a_file(path, "not a regular file"))
            if status.st_nlink > 1:  # a hard link to a file elsewhere: do not write through it
                raise RunDirectoryError(_not_a_file(path, "a hard link to another file"))
            _lock(descriptor, path)
            owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, (json.dumps(owner) + "\n").encode(), 0)
        except BaseException:
            os.close(descriptor)
            raise
        return cls(path, descriptor)

    def release(self) -> None:
        """Free the lock (idempotent). The file stays, emptied: an unlocked file is no obstacle,
        and without ``flock`` an empty one names no owner."""
        if self._descriptor is not None:
            descriptor, self._descriptor = self._descriptor, None
            with contextlib.suppress(OSError):
                os.ftruncate(descriptor, 0)
            os.close(descriptor)  # closing the descriptor releases the flock


def _lock(descriptor: int, path: Path) -> None:
    if fcntl is not None:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            raise RunDirectoryError(_in_use_message(path, _owner(descriptor))) from None
        except OSError:
            pass  # no flock on this filesystem: fall back to the recorded pid
    owner = _owner(descriptor)
    if owner and _alive_here(owner):
        raise RunDirectoryError(_in_use_message(path, owner))


def _owner(descriptor: int) -> dict[str, object]:
    with contextlib.suppress(OSError, ValueError):
        owner = json.loads(os.pread(descriptor, 4096, 0) or b"{}")
        if isinstance(owner, dict):
            return owner
    return {}


def _alive_here(owner: dict[str, object]) -> bool:
    """Whether the recorded owner is a live process on this host (another host: assume so)."""
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    if owner.get("host") != socket.gethostname():
        return True
    return pid == os.getpid() or process_alive(pid)


def process_alive(pid: int) -> bool:
    """Whether a process `pid` runs on this host (one of another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _in_use_message(path: Path, owner: dict[str, object]) -> str:
    who = (
        f"process {owner.get('pid')} on {owner.get('host')} (since {owner.get('since')})"
        if owner
        else "another process"
    )
    return (
        f"run_dir={path.parent} is in use by {who}; wait for it to finish or stop it, "
        "then try again"
    )


def _not_a_file(path: Path, what: str) -> str:
    return (
        f"run_dir={path.parent} holds a {LOCK_FILE} that is {what}; twcore neither writes "
        "through nor waits on it: remove it if the directory is yours"
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
