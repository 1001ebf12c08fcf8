"""TaskMet's reproduction grid for ``twcore reproduce`` (with the two-stage and DFL baselines)."""

from __future__ import annotations

from twcore.contract.grids import ReproductionGrid, as_arguments

SELECT_MSE = {"eval_every": 50, "keep_best": True, "best_metric": "min:mse"}
SELECT_DQ = {"eval_every": 50, "keep_best": True}
CUBIC = {
    "two-stage": {"method": "two-stage", "steps": 1000, "optim.lr": 0.01, **SELECT_MSE},
    "dfl": {"method": "dfl", "steps": 1000, "optim.lr": 0.05, **SELECT_DQ},
    "taskmet": {"method": "taskmet", "steps": 30, "eval_every": 0},
}
MLP = {
    "two-stage": {"method": "two-stage", "steps": 2000, **SELECT_MSE},
    "dfl": {"method": "dfl", "steps": 2000, **SELECT_DQ},
    "taskmet": {
        "method": "taskmet",
        "steps": 60,
        "eval_every": 0,
        "method.inner_steps_first": 200,
        "method.inner_steps": 20,
        "method.validate_every": 2,
    },
}
SEEDS = "0,1,2,3,4"


def reproduction_grid() -> ReproductionGrid:
    """Two-stage, DFL and TaskMet on the three decision tasks, with the settings of
    ``benchmarks/reproduce.py``; the quick version is cubic top-k, one seed, shorter runs."""
    sweeps = [
        as_arguments({"task": "cubic-topk", "model": "linear", "seed": SEEDS, "label": k, **v})
        for k, v in CUBIC.items()
    ]
    sweeps += [
        as_arguments(
            {"task": "portfolio,budget-allocation", "model": "mlp", "seed": SEEDS, "label": k, **v}
        )
        for k, v in MLP.items()
    ]
    quick = [
        as_arguments(
            {
                "task": "cubic-topk",
                "model": "linear",
                "seed": "0",
                "label": k,
                **v,
                "steps": 300 if k != "taskmet" else 10,
            }
        )
        for k, v in CUBIC.items()
    ]
    return ReproductionGrid(
        name="taskmet-decision",
        description="TaskMet reaches DFL's decision quality on cubic top-k while keeping MSE "
        "near two-stage's",
        sweeps=tuple(sweeps),
        quick=tuple(quick),
    )
