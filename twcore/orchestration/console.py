"""Messages to the person running twcore (stderr), in one consistent format."""

from __future__ import annotations

import sys


def warn(message: str) -> None:
    """Print ``twcore: warning: <message>`` on stderr."""
    print(f"twcore: warning: {message}", file=sys.stderr, flush=True)


def error(message: str) -> None:
    """Print ``twcore: error: <message>`` on stderr (one line)."""
    print(f"twcore: error: {message}", file=sys.stderr, flush=True)


def info(message: str) -> None:
    """Print ``message`` on stderr (progress and where things were written)."""
    print(message, file=sys.stderr, flush=True)
