"""Predict-then-optimise baselines: ``two-stage`` (fit the predictions, then decide) and ``dfl``
(train through the decision layer on the task loss, plus α × the prediction loss)."""

from twcore_method_dfl.methods import DecisionFocused, DecisionFocusedConfig, TwoStage

__all__ = ["DecisionFocused", "DecisionFocusedConfig", "TwoStage"]
