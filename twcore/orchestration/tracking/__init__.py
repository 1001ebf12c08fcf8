"""Logging of runs: ``metrics.jsonl`` in the run directory and W&B."""

from twcore.orchestration.tracking.tracker import Tracker, TrackingBackend

__all__ = ["Tracker", "TrackingBackend"]
