"""Callbacks: code of yours the engine calls during a run (``twcore.run(..., callbacks=[...])``).

Subclass :class:`Callback` and override what you need::

    class StopWhenGood(twcore.Callback):
        def on_eval(self, step, split, metrics):
            self.good = metrics["avg_acc"] > 0.9

        def should_stop(self, step):
            return getattr(self, "good", False)

In a data-parallel run every process calls its callbacks, and a stop any of them asks for
stops all at the same step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twcore.contract.method import StepResult


class Callback:
    """Hooks the engine calls; every one does nothing unless overridden."""

    def on_step_end(self, step: int, result: StepResult) -> None:
        """After training step `step` (1-based count of completed steps) with what it reported."""

    def on_eval(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        """After an evaluation of `split` at `step` (periodic ``val`` ones and the final ones)."""

    def should_stop(self, step: int) -> bool:
        """Asked after every step: True ends the run now (status ``stopped``, with a
        checkpoint, resumable)."""
        return False


class Callbacks(Callback):
    """Several callbacks called in order; a stop if any asks for one."""

    def __init__(self, callbacks: Sequence[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_step_end(self, step: int, result: StepResult) -> None:
        for callback in self.callbacks:
            callback.on_step_end(step, result)

    def on_eval(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        for callback in self.callbacks:
            callback.on_eval(step, split, metrics)

    def should_stop(self, step: int) -> bool:
        return any(callback.should_stop(step) for callback in self.callbacks)


def as_callbacks(callbacks: Sequence[Any] | None) -> Callbacks:
    """`callbacks` as one :class:`Callbacks` (TypeError for something that is not one)."""
    found = list(callbacks or [])
    for callback in found:
        if not isinstance(callback, Callback):
            raise TypeError(
                f"callbacks must be twcore.Callback instances, got {type(callback).__name__}"
            )
    return Callbacks(found)
