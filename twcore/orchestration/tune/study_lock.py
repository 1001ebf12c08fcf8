"""One ``twcore tune`` process at a time in a study's short critical sections.

Creating a study (and enqueuing its grid), requeuing orphaned trials and asking for the next
trial read the study and then write it. On PostgreSQL Optuna's row locks order the state
changes, but not these read-then-write sequences; on SQLite nothing does. So they run under a
lock every process of the study shares: an ``flock`` on a file beside the SQLite database, or a
PostgreSQL advisory lock keyed by the study's name. Each is held for milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SQLITE_PREFIX = "sqlite:///"


@contextlib.contextmanager
def study_lock(url: str, storage: Any, study_name: str) -> Iterator[None]:
    """Hold the study's lock for the block (nothing to hold for other databases)."""
    if url.startswith(SQLITE_PREFIX) and len(url) > len(SQLITE_PREFIX):
        path = Path(url[len(SQLITE_PREFIX) :].split("?", 1)[0] + ".lock")
        with path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield  # released when the file closes
        return
    if url.startswith("postgresql"):
        from sqlalchemy import text

        key = zlib.crc32(f"twcore:{study_name}".encode())
        with storage.engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        return
    yield
