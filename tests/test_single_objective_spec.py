"""single_objective_spec: the spec of a plain supervised task."""

from twcore.contract.spec import Capability, ObjectiveKind, Role, single_objective_spec


def test_classification_spec_has_one_main_objective_and_accuracy_first():
    spec = single_objective_spec((1, 8, 8), "digit", 10, "classification")
    assert spec.objective_names == ("digit",)
    assert spec.main_objective.role is Role.MAIN and spec.heads[0].size == 10
    assert (spec.primary_metric, spec.primary_mode) == ("acc", "max")
    assert spec.has(Capability.VALIDATION) and spec.input_shape == (1, 8, 8)


def test_regression_spec_minimises_mse():
    spec = single_objective_spec((10,), "target", 1, ObjectiveKind.REGRESSION)
    assert (spec.primary_metric, spec.primary_mode, spec.summary_metrics) == (
        "mse",
        "min",
        ("mse", "loss"),
    )
