"""TaskMet (Bansal, Chen, Mukadam, Amos, NeurIPS 2023): learn a metric Λφ(x) over the prediction
space from the downstream task loss; train the predictor on the metric-weighted prediction loss.

:class:`TaskMet` is the rule for any training loop (with :class:`MetricNetwork`);
:class:`TaskMetMethod` its engine adapter (the ``taskmet`` plugin)."""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_method_taskmet.method import TaskMetConfig, TaskMetMethod
    from twcore_method_taskmet.metric import Metric, MetricNetwork
    from twcore_method_taskmet.rule import TaskMet
    from twcore_method_taskmet.spaces import DecisionSpace, ObjectiveSpace, PredictionSpace

__all__ = [
    "DecisionSpace",
    "Metric",
    "MetricNetwork",
    "ObjectiveSpace",
    "PredictionSpace",
    "TaskMet",
    "TaskMetConfig",
    "TaskMetMethod",
]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
