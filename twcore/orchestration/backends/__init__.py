"""Where the trials of a sweep run: in this process, in local worker processes, or on Ray.

Each backend is a class registered by name in :data:`BACKENDS`; ``twcore sweep --backend NAME``
picks one. They share the per-trial logic of :mod:`~twcore.orchestration.backends.trial`
(resume a crashed trial from its checkpoint, retry, skip a completed one).
"""

from twcore.orchestration.backends.base import Backend, SweepOptions, TrialJob, TrialOutcome
from twcore.orchestration.backends.registry import BACKENDS, get_backend

__all__ = ["BACKENDS", "Backend", "SweepOptions", "TrialJob", "TrialOutcome", "get_backend"]
