"""An exclusive lock on a run directory, held for the life of a run.

Two processes must never train into one directory: two ``twcore resume`` of one run would both
write its checkpoint, its summary and one W&B run id, and two new runs could both claim an empty
directory between a check and a create. The lock is a file ``.lock`` in the directory, locked
with ``flock`` (released by the kernel when its holder exits, however it exits: a lock left by a
killed process is never in the way) and holding the owner's pid, host and start time for the
message the next process gets. On a filesystem without ``flock`` the pid is the fallback: a lock
file whose process no longer runs on this host is stale and taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import IO

from twcore.errors import RunDirectoryError

try:
    import fcntl
except ImportError:  # not POSIX: the pid fallback alone
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


class RunLock:
    """An acquired lock on one directory; :meth:`release` (or process exit) frees it."""

    def __init__(self, path: Path, handle: IO[str]) -> None:
        self.path = path
        self._handle: IO[str] | None = handle

    @classmethod
    def acquire(cls, directory: Path) -> RunLock:
        """Lock `directory` (which must exist) for this process.

        Raises:
            RunDirectoryError: another live process holds the lock (the message names its pid,
                host and start time), or the directory cannot be written.
        """
        path = directory / LOCK_FILE
        try:
            handle = path.open("a+", encoding="utf-8")
        except OSError as exc:
            raise RunDirectoryError(
                f"run_dir={directory} cannot be written ({exc.strerror}); choose a directory "
                "you can write to"
            ) from exc
        try:
            _lock(handle, path)
            handle.seek(0)
            handle.truncate()
            owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
            handle.write(json.dumps(owner) + "\n")
            handle.flush()
        except BaseException:
            handle.close()
            raise
        return cls(path, handle)

    def release(self) -> None:
        """Free the lock (idempotent). The file stays; an unlocked file is no obstacle."""
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        with contextlib.suppress(OSError):
            handle.seek(0)
            handle.truncate()
        handle.close()  # closing the descriptor releases the flock

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._handle is not None


def _lock(handle: IO[str], path: Path) -> None:
    if fcntl is not None:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            raise RunDirectoryError(_in_use_message(path, _owner(handle))) from None
        except OSError:
            pass  # no flock on this filesystem: fall back to the recorded pid
    owner = _owner(handle)
    if owner and _alive_here(owner):
        raise RunDirectoryError(_in_use_message(path, owner))


def _owner(handle: IO[str]) -> dict[str, object]:
    handle.seek(0)
    try:
        owner = json.loads(handle.read() or "{}")
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _alive_here(owner: dict[str, object]) -> bool:
    """Whether the recorded owner is a live process on this host (another host: assume so)."""
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    if owner.get("host") != socket.gethostname():
        return True
    if pid == os.getpid():
        return True
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


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
