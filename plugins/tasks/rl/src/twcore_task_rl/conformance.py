"""The task conformance suite, adapted to environment tasks (for their plugins' tests)."""

from __future__ import annotations

from twcore.testing import TaskConformance
from twcore_task_rl.auxiliary_q import EVAL_SEEDS


class EnvironmentTaskConformance(TaskConformance):
    """:class:`TaskConformance` for the auxiliary-loss Q-learning tasks: they have no stored
    splits, so "splits share no examples" becomes "validation and test episodes use disjoint
    seeds"."""

    def test_splits_share_no_examples(self) -> None:
        task = self.harness().components.task
        count = task.config.eval_episodes
        seeds = {s: set(range(EVAL_SEEDS[s], EVAL_SEEDS[s] + count)) for s in EVAL_SEEDS}
        assert not seeds["val"] & seeds["test"]
        assert task.eval_splits == ("val", "test")
