"""Where the trials of a sweep run: in this process, in local worker processes, or on Ray.

Each backend is a class registered by name in :data:`BACKENDS`; ``twcore sweep --backend NAME``
picks one. They share the per-trial logic of :mod:`twcore.backends.trial` (resume a crashed
trial from its checkpoint, retry, skip a completed one).
"""

from twcore.backends.base import Backend, SweepOptions, TrialJob, TrialOutcome, get_backend

__all__ = ["Backend", "SweepOptions", "TrialJob", "TrialOutcome", "get_backend"]
