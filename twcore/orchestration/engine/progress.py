"""Progress display: a bar with loss and ETA on a terminal, one line per evaluation otherwise."""

from __future__ import annotations

import sys
from typing import Any

import torch

from twcore.orchestration.console import info


class Progress:
    """Shows training progress on stderr."""

    def __init__(self, *, total: int, initial: int, enabled: bool, label: str) -> None:
        self.enabled = enabled
        self.label = label
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=initial,
                desc=label,
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
                leave=False,
            )

    def update(self, step: int, losses: torch.Tensor) -> None:
        """Advance to `step`, showing the mean of the latest objective losses [K]."""
        if self.bar is None:
            return  # no device sync when nothing is shown
        self.bar.n = step
        self.bar.set_postfix(loss=f"{float(losses.mean()):.4g}", refresh=False)
        self.bar.refresh()

    def evaluation(
        self, step: int, split: str, metrics: dict[str, float], shown: tuple[str, ...]
    ) -> None:
        """Report an evaluation (above the bar on a terminal, as a line otherwise)."""
        if not self.enabled:
            return
        values = " ".join(f"{k}={metrics[k]:.4g}" for k in shown if k in metrics)
        line = f"[{self.label}] step {step} {split}: {values}"
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            info(line)

    def note(self, text: str) -> None:
        """Say what a long phase without steps is doing (above the bar, or as a line)."""
        if not self.enabled:
            return
        line = f"[{self.label}] {text}"
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            info(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
