"""Stopping cleanly on Ctrl-C or SIGTERM.

While a run trains (:func:`graceful_stop`) the step finishes, a checkpoint is written, then
the run stops; while a run records how it ended, a signal is noted and the record is written
whole. Elsewhere (a final evaluation, a command between runs) SIGTERM acts as Ctrl-C does
(:func:`stop_signals_interrupt`): ``KeyboardInterrupt`` at once, so ``finally`` blocks run and
the run or command records that it was interrupted.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set by the first SIGINT/SIGTERM; a second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name


@contextmanager
def _handled_by(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """`handler` answers SIGINT and SIGTERM while the block runs; the earlier handlers after it
    (main thread only; elsewhere nothing is installed)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, earlier in previous.items():
            # None: the earlier handler was not installed from Python; the default is closest.
            signal.signal(sig, earlier if earlier is not None else signal.SIG_DFL)


@contextmanager
def graceful_stop() -> Iterator[StopRequest]:
    """Install the handlers for the duration of a run (main thread only; elsewhere a no-op)."""
    request = StopRequest()
    with _handled_by(request._handle):
        yield request


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``KeyboardInterrupt`` at once while the block runs (main thread
    only; elsewhere a no-op). :func:`graceful_stop` inside it takes over for its own block, and
    this block inside :func:`graceful_stop` takes over from it."""
    with _handled_by(_interrupt):
        yield
