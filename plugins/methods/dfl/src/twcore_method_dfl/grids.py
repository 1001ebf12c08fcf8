"""The decision-focused losses' reproduction grids for ``twcore reproduce``.

``dfl-losses``: PyEPO's comparison (two-stage against SPO+, PFYL, DPO, NCE and learning to rank,
plus DFL through the relaxed decisions) on PyEPO's shortest path and knapsack with a linear
model, with TaskMet beside them (its own 30 outer steps, as in its grid).

``dfl-losses-lodl``: the same losses where each applies on TaskMet's three tasks (cubic top-k,
portfolio, budget allocation): SPO+ and PFYL need an objective affine in the true values, so
they run on cubic top-k and portfolio, not on budget allocation (whose reach is a product).
"""

from __future__ import annotations

from twcore.contract.grids import Claim, ReproductionGrid, as_arguments, seeds

METHODS = ("two-stage", "dfl", "spo-plus", "pfyl", "dpo", "nce", "ltr")
SETTINGS = {
    "model": "linear",
    "steps": 1000,
    "batch_size": 32,
    "optim.lr": 0.01,
    "eval_every": 100,
    "keep_best": True,
    "seed": seeds(5),
}
"""5 seeds: at 3 the ledger left PFYL on knapsack inconclusive and said 4 would decide it. The
count was raised once, for every loss alike, after seeing the 3-seed results (stated in the
README)."""
TASKMET = {"method": "taskmet", "label": "taskmet", "model": "linear", "steps": 30, "eval_every": 0}
"""TaskMet with its suggested run (30 outer steps, each a whole inner training: 3,400 model
updates in all); it selects on validation inside its own loop."""
PYEPO = "PyEPO: a PyTorch-based end-to-end predict-then-optimize library (Tang and Khalil)"
PYEPO_CLAIMS = tuple(
    Claim(
        f"On {task} (degree 4), {name} reaches a lower normalised regret than two-stage",
        "normalised_regret", loss, "two-stage", where={"task": task},
        paper="PyEPO's own runs of these settings: docs/pyepo_comparison.md",
    )
    for task in ("shortest-path", "knapsack")
    for loss, name in (("spo-plus", "SPO+"), ("pfyl", "PFYL"))
)  # fmt: skip
"""PyEPO's finding: with a misspecified linear model, the losses built on the decisions beat
fitting the costs."""


def reproduction_grids() -> tuple[ReproductionGrid, ...]:
    """Both grids of this plugin."""
    return reproduction_grid(), lodl_grid()


def reproduction_grid() -> ReproductionGrid:
    """Every decision-focused loss on shortest-path and knapsack (PyEPO's degree 4, noise 0.5,
    1,000 training instances), 5 seeds, one labelled sweep per method, and TaskMet; the quick
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
        paper=PYEPO,
        claims=PYEPO_CLAIMS,
    )


LODL_SETTINGS: dict[str, object] = {
    "steps": 1000,
    "eval_every": 50,
    "keep_best": True,
    "seed": "0,1,2",
}
LODL_TASKS: dict[str, dict[str, object]] = {
    "cubic-topk": {"model": "linear", "optim.lr": 0.05},
    "portfolio,budget-allocation": {"model": "mlp"},
}
LODL_SEEDS: dict[str, str] = {"cubic-topk": "0,1,2,3,4"}
"""Seeds beyond :data:`LODL_SETTINGS`'s three where the seeds' results do not spread (every
seed of a loss reaches the same test decision quality on cubic top-k): an exact sign test
decides a claim at α = 0.05 only from 5 seeds."""
AFFINE_ONLY = ("spo-plus", "pfyl")
"""The losses that need an objective affine in the true values (not budget allocation)."""
PERTURBED = ("pfyl", "dpo")
PERTURBATION_SCALE = {"portfolio": 0.02, "budget-allocation": 0.3}
"""σ of the perturbed losses where the values are not on the unit scale of PyEPO's default
σ = 1: the standard deviation of the task's training targets to one digit (0.024 for
portfolio's daily returns, 0.35 for budget allocation's reach; cubic top-k's is 1.5, where σ = 1
stays). A perturbation 40 times the returns' spread leaves the perturbed optimum blind to the
predictions."""
LODL_TASKMET: dict[str, dict[str, object]] = {
    "cubic-topk": {"model": "linear", "steps": 30},
    "portfolio,budget-allocation": {
        "model": "mlp",
        "steps": 60,
        "method.inner_steps_first": 200,
        "method.inner_steps": 20,
        "method.validate_every": 2,
    },
}
"""TaskMet with the settings of its own grid (``taskmet-decision``)."""


LODL_CLAIMS = (
    Claim(
        "On cubic top-k, DFL's decision quality beats two-stage's",
        "ndq", "dfl", "two-stage", where={"task": "cubic-topk"},
    ),
    Claim(
        "On cubic top-k, SPO+ reaches DFL's decision quality (within 0.02)",
        "ndq", "spo-plus", "dfl", where={"task": "cubic-topk"}, margin=-0.02,
    ),
    Claim(
        "On budget allocation, DFL's decision quality beats two-stage's",
        "ndq", "dfl", "two-stage", where={"task": "budget-allocation"},
        reading="only partly read: in an ablation of the smoothing γ of its training "
        "decisions, at this commit (5 seeds, "
        "`plugins/methods/dfl/benchmarks/budget_smoothing_ablation.py`, "
        "`plugins/methods/dfl/docs/lodl/budget_smoothing_ablation.md`), none of γ = 0.3, 1 (the "
        "grid's) and 2 brings DFL near two-stage's 0.964 — γ = 0.3 is 2.8 points worse than "
        "γ = 1 (decided) and γ = 2 does not differ decidedly — while its predicted reach leaves "
        "the values' scale more as γ grows (test MSE 0.43, 0.76, 2.61; two-stage's 0.0077); on "
        "one seed of five DFL never trains at any γ (its validation decision quality stays at "
        "−0.055 from the first evaluation to the last). Why the trained seeds stop at 0.78–0.85 "
        "is not established",
    ),
)  # fmt: skip


def lodl_grid() -> ReproductionGrid:
    """Two-stage, DFL, SPO+, PFYL, DPO and TaskMet on cubic top-k (linear model) and on
    portfolio and budget allocation (MLP), 3 seeds (the losses on cubic top-k: 5,
    :data:`LODL_SEEDS`), 1,000 steps (TaskMet: its own outer steps),
    each selecting on validation decision quality; SPO+ and PFYL only where the objective is
    affine in the true values; PFYL and DPO with σ at the values' scale
    (:data:`PERTURBATION_SCALE`). The quick version is cubic top-k, one seed, 200 steps."""
    sweeps = []
    for tasks, settings in LODL_TASKS.items():
        for method in ("two-stage", "dfl", "spo-plus", "pfyl", "dpo"):
            chosen = tasks.split(",")
            if method in AFFINE_ONLY:
                chosen = [t for t in chosen if t != "budget-allocation"]
            runs = {**settings, "method": method, "label": method, **LODL_SETTINGS}
            if tasks in LODL_SEEDS:
                runs["seed"] = LODL_SEEDS[tasks]
            if method in PERTURBED and any(t in PERTURBATION_SCALE for t in chosen):
                sweeps += [
                    as_arguments({**runs, "task": task, "method.sigma": PERTURBATION_SCALE[task]})
                    for task in chosen
                ]
            else:
                sweeps.append(as_arguments({**runs, "task": ",".join(chosen)}))
    sweeps += [
        as_arguments(
            {"task": tasks, "method": "taskmet", "label": "taskmet", "eval_every": 0,
             "seed": LODL_SETTINGS["seed"], **settings}
        )
        for tasks, settings in LODL_TASKMET.items()
    ]  # fmt: skip
    quick = tuple(
        as_arguments(
            {"task": "cubic-topk", "method": method, "label": method,
             **LODL_TASKS["cubic-topk"], **LODL_SETTINGS, "steps": 200, "seed": "0"}
        )
        for method in ("two-stage", "dfl", "spo-plus", "pfyl", "dpo")
    )  # fmt: skip
    return ReproductionGrid(
        name="dfl-losses-lodl",
        description="on TaskMet's tasks, the losses built on the decisions (SPO+, PFYL, DPO) "
        "reach the decision quality of DFL, and TaskMet keeps the MSE of two-stage",
        sweeps=tuple(sweeps),
        quick=quick,
        paper="Decision-focused learning without decision-making: learning locally optimized "
        "decision losses (LODL; Shah et al.)",
        claims=LODL_CLAIMS,
    )
