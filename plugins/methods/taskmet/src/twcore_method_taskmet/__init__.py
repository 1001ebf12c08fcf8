"""TaskMet (Bansal, Chen, Mukadam, Amos, NeurIPS 2023): learn a metric Λφ(x) over the prediction
space from the downstream task loss; train the predictor on the metric-weighted prediction loss."""

from twcore_method_taskmet.method import TaskMet, TaskMetConfig
from twcore_method_taskmet.metric import Metric, MetricNetwork
from twcore_method_taskmet.spaces import DecisionSpace, ObjectiveSpace, PredictionSpace

__all__ = [
    "DecisionSpace",
    "Metric",
    "MetricNetwork",
    "ObjectiveSpace",
    "PredictionSpace",
    "TaskMet",
    "TaskMetConfig",
]
