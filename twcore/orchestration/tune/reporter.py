"""The callback inside a tuned run: reports validation values to the study, stops if pruned.

The first seed of a configuration is its *lead*: the pruner judges the configuration by the lead
seed's validation curve, which every trial has at the same seed, so trials are compared paired.
The other seeds report nothing and stop as soon as the lead's trial is pruned. Whatever process
the run is in (this one, a local worker, a Ray task), the callback opens the study database
itself: the pruner needs the other trials' values at the same step, which live only there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from twcore.contract.callbacks import Callback
from twcore.orchestration.backends.trial_callbacks import callback_factory
from twcore.orchestration.tune.study import PRUNED_AT, PrunerSpec, open_storage, optuna_module

FACTORY = "twcore.orchestration.tune.reporter:study_reporter"


@callback_factory
def study_reporter(
    *,
    storage: str,
    study: str,
    trial_id: int,
    metric: str,
    pruner: Mapping[str, Any],
    lead: bool,
    steps: int,
) -> list[Callback]:
    """The callbacks of one tuned run (the callback-spec factory; arguments are plain data)."""
    spec = PrunerSpec(**pruner)
    return [StudyReporter(storage, study, trial_id, metric, spec, lead=lead, steps=steps)]


class StudyReporter(Callback):
    """Reports ``val/<metric>`` at every periodic validation evaluation (lead seed) and stops
    the run once the study's pruner prunes the trial. The final evaluation (at `steps`) is not
    reported: a run that trained to its end is judged by its final value, not pruned."""

    def __init__(
        self,
        storage_url: str,
        study_name: str,
        trial_id: int,
        metric: str,
        pruner: PrunerSpec,
        *,
        lead: bool,
        steps: int,
    ) -> None:
        optuna = optuna_module()
        self.storage = open_storage(storage_url)
        self.study = optuna.load_study(
            study_name=study_name, storage=self.storage, pruner=pruner.build()
        )
        self.trial = optuna.trial.Trial(self.study, trial_id)
        self.trial_id, self.metric, self.lead, self.steps = trial_id, metric, lead, steps
        self.reported = set(self.storage.get_trial(trial_id).intermediate_values)
        self.pruned = False

    def on_eval(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        if step >= self.steps:  # the final evaluations: the run is over, its connection too
            self.storage.engine.dispose()
            return
        if split != "val" or self.pruned:
            return
        if not self.lead:
            self.pruned = self._finished_or_pruned()
            return
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(value) or step in self.reported:
            return
        optuna = optuna_module()
        try:
            self.trial.report(float(value), step)
            self.reported.add(step)
            if self.trial.should_prune():
                self.storage.set_trial_user_attr(self.trial_id, PRUNED_AT, step)
                self.pruned = True
        except optuna.exceptions.UpdateFinishedTrialError:
            self.pruned = True  # the study ended this trial (requeued, over the budget)

    def should_stop(self, step: int) -> bool:
        return self.pruned

    def _finished_or_pruned(self) -> bool:
        trial = self.storage.get_trial(self.trial_id)
        return PRUNED_AT in trial.user_attrs or trial.state.is_finished()
