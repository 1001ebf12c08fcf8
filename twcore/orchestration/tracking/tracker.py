"""The engine's single logging entry point, fanning out to backends.

A backend that fails (W&B cannot start, cannot write) is dropped with one warning and the run
goes on: tracking never breaks training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Protocol

from twcore.orchestration.console import warn
from twcore.orchestration.tracking.values import flatten_values


class TrackingBackend(Protocol):
    """Where logged values go (``metrics.jsonl``, W&B, ...)."""

    name: str

    def log(self, values: dict[str, Any], step: int) -> None: ...

    def finish(self, status: str) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...


class Tracker:
    """Logs flat values at a step to every live backend."""

    def __init__(self, backends: list[TrackingBackend]) -> None:
        self.backends = list(backends)
        self.step = 0

    def log(self, values: Mapping[str, Any], step: int | None = None) -> None:
        """Log values (numbers, tensors, nested dicts, media) at `step` (default: current)."""
        flat = flatten_values(values)
        if not flat:
            return
        at = self.step if step is None else step
        for backend in list(self.backends):
            self._guard(backend, "log", lambda b=backend: b.log(flat, at))

    def log_summary(self, values: Mapping[str, Any]) -> None:
        """Final values shown as the run's summary (backends without summaries ignore it)."""
        flat = flatten_values(values)
        for backend in list(self.backends):
            log_summary = getattr(backend, "log_summary", None)
            if log_summary is not None:
                self._guard(backend, "write its summary", lambda f=log_summary: f(flat))

    def finish(self, status: str) -> None:
        """Close every backend; failures are warnings."""
        for backend in list(self.backends):
            self._guard(backend, "finish", lambda b=backend: b.finish(status))

    def state_dict(self) -> dict[str, Any]:
        """Backend state needed to continue the same runs after a resume (e.g. W&B run id)."""
        state: dict[str, Any] = {}
        for backend in self.backends:
            state.update(backend.state_dict())
        return state

    def _guard(self, backend: TrackingBackend, action: str, call: Any) -> None:
        try:
            call()
        except Exception as exc:  # a tracking failure must never stop training
            self.backends.remove(backend)
            warn(
                f"{backend.name} could not {action} ({type(exc).__name__}: {exc}); "
                "continuing without it"
            )
            if action != "finish":
                self._close_quietly(backend)

    @staticmethod
    def _close_quietly(backend: TrackingBackend) -> None:
        """Keep what a dropped backend already recorded (best effort)."""
        with contextlib.suppress(Exception):  # already warned; nothing more to do
            backend.finish("failed")
