"""L-DRO's reproduction grids for ``twcore reproduce`` (with ERM and group DRO).

``ldro-points``: the paper's synthetic points (a linear model, one outlier task); worst-case
against average loss. ``ldro-mnist``: many-task MNIST (20 digit-subset tasks, a CNN), average
and worst-task accuracy, with the paper's hyperparameter grid point and a larger step, on tasks
made to differ the way the paper's motivation says real task sets do (:data:`HARD_TASKS`).
"""

from __future__ import annotations

from typing import Any

from twcore.contract.grids import Claim, ReproductionGrid, as_arguments, seeds

POINTS = {"task": "ldro-points", "model": "linear", "optim.lr": 0.02, "steps": 600}
VARIANTS: dict[str, dict[str, Any]] = {
    "erm": {"method": "ew"},
    "group-dro": {"method": "group-dro", "method.step_size": 0.1},
    "ldro": {
        "method": "ldro",
        "method.interaction_every": 1,
        "method.step_size": 0.5,
        "method.lookahead": 1.0,
    },
}
PAPER = (
    "Lookahead-DRO: balancing average and worst-case accuracy in multitask learning (Michel et al.)"
)
POINTS_CLAIMS = (
    Claim("L-DRO's worst-case loss is lower than ERM's", "worst_loss", "ldro", "erm"),
    Claim("L-DRO's worst-case loss is lower than group DRO's", "worst_loss", "ldro", "group-dro"),
)  # fmt: skip

NUM_TASKS = 20
NOISY_TASKS = (9, 10)
"""Even and odd digits: 40 % of their training labels redrawn at random (a loss that cannot
fall to zero)."""
RARE_CLASS_TASKS = (4, 5)
"""Two hard tasks (3/5/8/9/0 and 4/7/9/1/2): their last digit keeps 5 % of its training labels
(class-imbalanced, while the test set counts that class in full)."""
HARD_TASKS = {
    "task.label_noise": [0.4 if t in NOISY_TASKS else 0.0 for t in range(NUM_TASKS)],
    "task.rare_class_fraction": [0.05 if t in RARE_CLASS_TASKS else 1.0 for t in range(NUM_TASKS)],
}
"""Many-task MNIST's 20 default tasks already mix easy, hard, overlapping and duplicated ones
(tasks 16-19 repeat easy tasks), yet every task ends above 96 % under ERM, so ERM, group DRO
and L-DRO tie within noise. These settings add the other kinds of difference: label noise on
two tasks and a rare class in two; chosen before any method ran on them, not tuned."""
MNIST = {
    "task": "mnist-multitask",
    "task.num_tasks": NUM_TASKS,
    **HARD_TASKS,
    "model": "cnn",
    "steps": 1500,
    "eval_every": 250,
}
MNIST_VARIANTS: dict[str, dict[str, Any]] = {
    "erm": {"method": "ew"},
    "group-dro": {"method": "group-dro", "method.step_size": 0.01},
    "ldro": {"method": "ldro"},
    "ldro-parameters": {"method": "ldro", "method.interaction": "parameters"},
    "ldro-large-step": {"method": "ldro", "method.step_size": 0.1, "method.lookahead": 1.0},
}
MNIST_CLAIMS = (
    Claim(
        "On many-task MNIST, L-DRO's worst-task accuracy beats ERM's",
        "worst_acc", "ldro", "erm",
        reading="the worst tasks under every method are the two with 40 % label noise (ERM "
        "0.810 and 0.836, group DRO 0.734 and 0.769, L-DRO 0.777 and 0.825: "
        "`plugins/methods/ldro/benchmarks/worst_tasks.py`), where L-DRO loses less than group DRO "
        "and more than ERM; the README's reading, not checked against the learned weights: "
        "their training loss cannot fall below the noise, so a worst-case weighting keeps "
        "weighting them up and fits their noisy labels, the failure of off-the-shelf DRO the "
        "paper describes (the L-DRO README, Reproduction)",
    ),
    Claim(
        "On many-task MNIST, L-DRO's worst-task accuracy beats group DRO's",
        "worst_acc", "ldro", "group-dro",
    ),
    Claim(
        "On many-task MNIST, L-DRO's average accuracy stays within 0.5 point of ERM's",
        "avg_acc", "ldro", "erm", margin=-0.005,
    ),
)  # fmt: skip


def reproduction_grids() -> tuple[ReproductionGrid, ...]:
    """Both grids of this plugin."""
    return reproduction_grid(), mnist_grid()


def reproduction_grid() -> ReproductionGrid:
    """ERM, group DRO and L-DRO on the paper's synthetic points, 3 seeds, evaluated every 5
    steps (θ's path, for ``plot_ldro_points.py``); the quick version is one seed, 200 steps."""
    return ReproductionGrid(
        name="ldro-points",
        description="L-DRO trades a little average loss for a much lower worst-case loss, "
        "better than group DRO",
        sweeps=tuple(
            as_arguments({**POINTS, "eval_every": 5, "seed": "0,1,2", "label": k, **v})
            for k, v in VARIANTS.items()
        ),
        quick=tuple(
            as_arguments({**POINTS, "eval_every": 50, "steps": 200, "seed": "0", "label": k, **v})
            for k, v in VARIANTS.items()
        ),
        paper=PAPER,
        claims=POINTS_CLAIMS,
    )


MNIST_SEEDS = seeds(10)
"""Ten seeds. At three, the ledger's paired t-tests left claims of this grid inconclusive that,
by its own estimate, 6 to 26 seeds would decide (the ledger of commit b23402c); the count was
raised once, for every arm alike, before the added seeds ran."""


def mnist_grid() -> ReproductionGrid:
    """ERM, group DRO (η = 0.01) and L-DRO (the paper's η = 0.01, λ = 0.1, on the losses and
    on the parameters; and η = 0.1, λ = 1) on 20-task MNIST with a CNN, 10 seeds, 1,500 steps;
    the quick version is ERM and L-DRO, one seed, 100 steps."""
    return ReproductionGrid(
        name="ldro-mnist",
        description="on many tasks, L-DRO raises the worst task's accuracy above ERM's and "
        "group DRO's at little cost in average accuracy",
        sweeps=tuple(
            as_arguments({**MNIST, "seed": MNIST_SEEDS, "label": k, **v})
            for k, v in MNIST_VARIANTS.items()
        ),
        quick=tuple(
            as_arguments({**MNIST, "steps": 100, "eval_every": 0, "seed": "0", "label": k, **v})
            for k, v in MNIST_VARIANTS.items()
            if k in ("erm", "ldro")
        ),
        paper=PAPER,
        claims=MNIST_CLAIMS,
    )
