"""The decision-focused losses' reproduction grid for ``twcore reproduce``: PyEPO's comparison
(two-stage against SPO+, PFYL, DPO, NCE and learning to rank, plus DFL through the relaxed
decisions) on PyEPO's shortest path and knapsack with a linear model, with TaskMet beside them
(its own 30 outer steps, as in its grid)."""

from __future__ import annotations

from twcore.contract.grids import ReproductionGrid, as_arguments

METHODS = ("two-stage", "dfl", "spo-plus", "pfyl", "dpo", "nce", "ltr")
SETTINGS = {
    "model": "linear",
    "steps": 1000,
    "batch_size": 32,
    "optim.lr": 0.01,
    "eval_every": 100,
    "keep_best": True,
    "seed": "0,1,2",
}
TASKMET = {"method": "taskmet", "label": "taskmet", "model": "linear", "steps": 30, "eval_every": 0}
"""TaskMet with its suggested run (30 outer steps, each a whole inner training: 3,400 model
updates in all); it selects on validation inside its own loop."""


def reproduction_grid() -> ReproductionGrid:
    """Every decision-focused loss on shortest-path and knapsack (PyEPO's degree 4, noise 0.5,
    1,000 training instances), 3 seeds, one labelled sweep per method, and TaskMet; the quick
    version is shortest path, one seed, 100 steps, without TaskMet. Each loss selects on
    validation decision quality (``keep_best``)."""
    tasks = "shortest-path,knapsack"
    losses = [
        as_arguments({"task": tasks, "method": method, "label": method, **SETTINGS})
        for method in METHODS
    ]
    sweeps = (*losses, as_arguments({"task": tasks, **TASKMET, "seed": SETTINGS["seed"]}))
    quick = tuple(
        as_arguments(
            {
                "task": "shortest-path",
                "method": method,
                "label": method,
                **SETTINGS,
                "steps": 100,
                "seed": "0",
            }
        )
        for method in METHODS
    )
    return ReproductionGrid(
        name="dfl-losses",
        description="losses built on the decisions (SPO+, PFYL, DPO, NCE, LTR) reach a lower "
        "normalised regret than fitting the costs (two-stage) when the linear model is "
        "misspecified (PyEPO, degree 4)",
        sweeps=sweeps,
        quick=quick,
    )
