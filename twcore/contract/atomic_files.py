"""Writing a file atomically: at any moment the file is the old one or the new one, never a
partial file under the final name.

A write that fails (a full disk, an exception from the writer) removes its temporary file and
re-raises. A process killed mid-write cannot clean up: its temporary file (named
``.<name>.<pid>-<hex>.tmp``) stays until whoever next owns the directory removes it with
:func:`remove_stale_temporaries` (a run directory does so when it is locked).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

_TEMPORARY = re.compile(r"^\..+\.\d+-[0-9a-f]{8}\.tmp$")


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Replace `path` with what ``write(handle)`` writes into a binary handle (what `write`
    returns is ignored).

    The data goes to a temporary file beside `path`, is flushed and synced to disk, then renamed
    over `path` in one step (the directory is synced too). On any failure the temporary file is
    removed and the error re-raised; `path` keeps its previous contents. The first ``OSError``
    of a write is what is raised, even if the writer (torch's zip writer, say) caught it and
    raised something vaguer.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    # Created like any file (mode 0666 less the umask), unlike mkstemp's 0600.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    recorder: _RecordingWriter | None = None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            recorder = _RecordingWriter(handle)
            write(recorder)  # type: ignore[arg-type]
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        first = recorder.error if recorder is not None else None
        if first is not None and first is not exc and not isinstance(exc, KeyboardInterrupt):
            raise first from exc
        raise
    _fsync_directory(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write` of UTF-8 text."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Remove the temporary files :func:`atomic_write` left in `directory` (not below it) when
    its process was killed mid-write; only call this while no other process writes there."""
    removed = []
    for candidate in directory.glob(".*.tmp"):
        if _TEMPORARY.match(candidate.name) and candidate.is_file():
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
    return removed


class _RecordingWriter:
    """A binary handle that remembers the first OSError of its writes."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._handle.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every filesystem allows it)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
