"""Logging of runs: ``metrics.jsonl`` in the run directory and W&B."""

from twcore.tracking.media import Image, LinePlot
from twcore.tracking.tracker import Tracker, TrackingBackend

__all__ = ["Image", "LinePlot", "Tracker", "TrackingBackend"]
