"""``twcore tune``: hyperparameter search with Optuna over twcore runs (an optional extra:
``pip install 'twcore[tune]'``). See :mod:`~twcore.orchestration.tune.driver`."""

from twcore.orchestration.tune.driver import TuneOptions, run_tune
from twcore.orchestration.tune.records import TrialRecord, TuneResult

__all__ = ["TrialRecord", "TuneOptions", "TuneResult", "run_tune"]
