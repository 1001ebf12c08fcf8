"""TaskMet's reproduction grid for ``twcore reproduce`` (with the two-stage and DFL baselines).

Cubic top-k (linear model), portfolio and budget allocation (MLP), and budget allocation with
LODL's random extra features (:data:`DILUTED`), where the features say little about the reach
and a learned metric has prediction errors worth re-weighting; on the plain data two-stage is
already near the ceiling.
"""

from __future__ import annotations

from twcore.contract.grids import Claim, ReproductionGrid, as_arguments

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
DILUTED = {"task": "budget-allocation", "task.extra_dims": 60}
"""Budget allocation whose item features are mostly random (60 extra latent dimensions beside
the 4 that set the reach: a linear fit explains under 0.15 of the reach, against over 0.5
without them), chosen before any method ran on it."""
CLAIMS = (
    Claim(
        "On cubic top-k, TaskMet's decision quality beats two-stage's",
        "ndq", "taskmet", "two-stage", where={"task": "cubic-topk"},
    ),
    Claim(
        "On cubic top-k, TaskMet's decision quality is within 0.02 of DFL's",
        "ndq", "taskmet", "dfl", where={"task": "cubic-topk"}, margin=-0.02,
    ),
    Claim(
        "On cubic top-k, TaskMet's prediction MSE is lower than DFL's",
        "mse", "taskmet", "dfl", where={"task": "cubic-topk"},
    ),
    Claim(
        "On portfolio, TaskMet's decision quality beats two-stage's",
        "ndq", "taskmet", "two-stage", where={"task": "portfolio"},
    ),
    Claim(
        "On budget allocation, TaskMet's decision quality beats two-stage's",
        "ndq", "taskmet", "two-stage", where={"task": "budget-allocation", "task.extra_dims": 0},
        reading="an ablation at 5 seeds "
        "(`plugins/methods/taskmet/benchmarks/identity_metric.py`, "
        "`plugins/methods/taskmet/docs/identity_metric.md`) points at the learned metric without "
        "deciding it: on the same seeds and code two-stage reaches 0.9679 ± 0.0017 ndq, "
        "TaskMet's own loop with the metric fixed to the identity 0.9658 ± 0.0012 (a gap not "
        "tested) and with the learned metric 0.9612 ± 0.0043, with a 50 % higher test MSE "
        "(0.0114 against 0.0076) — its difference from the identity, −0.46 points "
        "([−0.96, +0.03]), is undecided at 5 seeds; two-stage is near the ceiling, so there is "
        "little to re-allocate (the ablation's learned-metric arm gives 0.9612 where the "
        "grid's runs, made at an older commit, gave 0.9579)",
    ),
    Claim(
        "On budget allocation with random extra features, TaskMet's decision quality beats "
        "two-stage's",
        "ndq", "taskmet", "two-stage", where=DILUTED,
        reading="not read: in an ablation at 5 seeds "
        "(`plugins/methods/taskmet/benchmarks/identity_metric.py`, "
        "`plugins/methods/taskmet/docs/identity_metric.md`) the learned metric does not differ "
        "decidedly from the identity (0.293 ± 0.055 against 0.313 ± 0.026 ndq, −2.0 points, "
        "[−6.3, +2.3]), the identity sits 2.1 points below two-stage's 0.334 on the same seeds "
        "and code (not tested), and the learned-metric arm is 2 points below the grid's TaskMet "
        "(0.313, an older commit), so it cannot say what costs the claim's 2.0 points; the extra "
        "features take every method far down, and the paper's budget data are real reach "
        "probabilities, which we neither have nor reproduce",
    ),
    Claim(
        "On budget allocation with random extra features, TaskMet's prediction MSE is lower "
        "than DFL's (it keeps a predictive model)",
        "mse", "taskmet", "dfl", where=DILUTED,
    ),
)  # fmt: skip


def reproduction_grid() -> ReproductionGrid:
    """Two-stage, DFL and TaskMet on the three decision tasks, 5 seeds (two-stage selects on
    validation MSE, DFL on validation decision quality, TaskMet inside its own loop); the quick
    version is cubic top-k, one seed, shorter runs."""
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
    sweeps += [
        as_arguments({**DILUTED, "model": "mlp", "seed": SEEDS, "label": k, **v})
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
        paper="TaskMet: task-driven metric learning for model learning (Bansal et al., "
        "NeurIPS 2023)",
        claims=CLAIMS,
    )


FIRST_INNER, LATER_INNER = 500, 100
"""TaskMet's inner steps at its first and every later outer step on CartPole; each inner step
takes one real environment step, as each MLE step does."""


def cartpole_arms(env_steps: int) -> dict[str, dict[str, object]]:
    """MLE and TaskMet (diagonal metric) at the same number of real environment steps,
    evaluated 12 times. (TaskMet with ``method.metric_floor=0.1`` is no longer an arm: in the
    200k-step runs committed before this grid, ``plugins/tasks/rl/docs/cartpole_200k.md`` at
    commit d42bade, it ended level with the plain diagonal at d = 32 and below it at d = 128,
    and it cost a third of the grid's time.)"""
    outer = 1 + (env_steps - FIRST_INNER) // LATER_INNER
    taskmet = {
        "method": "taskmet",
        "method.metric": "diagonal",
        "steps": outer,
        "eval_every": max(1, outer // 12),
        "method.inner_steps_first": FIRST_INNER,
        "method.inner_steps": LATER_INNER,
        "method.validate_every": 10,
    }
    return {
        "mle": {"method": "ew", "steps": env_steps, "eval_every": env_steps // 12},
        "taskmet": taskmet,
    }


LOOKAHEAD = {"task.lookahead_terms": 20, "task.lookahead_curvature": "gauss-newton"}
"""The ablation arm's Q step in the task loss: 20 terms of the Neumann series of the
Gauss–Newton step instead of one gradient step. (The Hessian's series, before its step was
capped, diverged within 40 outer steps; the capped Hessian series was not run. The RL task's
README.) Besides the curvature, 20 terms also take a longer step: up to 20η along directions
of little curvature, so a difference from the one-step arm is not the curvature's alone."""


SOFT_BELLMAN = {"task.lookahead_terms": 20, "task.lookahead_curvature": "soft-bellman"}
"""The second ablation arm's Q step: OMD's gradient, 20 terms of the series towards the
implicit gradient through the soft-Bellman fixed point (the model transitions' targets
bootstrap from the stepped Q network, whose dependence on ω the series' matrix includes),
undamped. Its series may diverge where that Jacobian has eigenvalues of negative real part;
TaskMet then skips the outer step (``method/skipped_outer_steps``)."""


def lookahead_arm(env_steps: int, lookahead: dict[str, object] = LOOKAHEAD) -> dict[str, object]:
    """TaskMet (diagonal metric) whose task loss takes the `lookahead` step (:data:`LOOKAHEAD`
    or :data:`SOFT_BELLMAN`): the ablations that ask whether the one-step lookahead is why
    TaskMet does not clearly beat MLE (inconclusive at 3 seeds with 32 distractors, the paper's
    463 against 250 not reproduced)."""
    return {**cartpole_arms(env_steps)["taskmet"], **lookahead}


ABLATIONS = {"taskmet-lookahead": LOOKAHEAD, "taskmet-soft-bellman": SOFT_BELLMAN}
"""The ablation arms at d = 32, by label."""


PAPER_RETURNS = {32: "TaskMet 463, MLE 250", 128: "TaskMet 378, MLE 38"}
"""The paper's CartPole returns after 200k steps (the design notes' reading of its plots)."""
CARTPOLE_CLAIMS = tuple(
    Claim(
        f"On CartPole with {d} distractors, TaskMet's return beats MLE's at 200k environment "
        "steps",
        "return", "taskmet", "mle", where={"task.distractors": d}, paper=PAPER_RETURNS[d],
    )
    for d in (32, 128)
)  # fmt: skip
ABLATION_NAMES = {
    "taskmet-lookahead": (
        "a 20-term Gauss–Newton lookahead",
        "the 20-term Gauss–Newton lookahead",
    ),
    "taskmet-soft-bellman": (
        "OMD's gradient through the soft-Bellman fixed point (20 terms)",
        "OMD's gradient through the soft-Bellman fixed point",
    ),
}
"""How the claims name each of the :data:`ABLATIONS`: within a sentence ("TaskMet with …") and
as its subject."""
LOOKAHEAD_CLAIMS = tuple(
    claim
    for label, (within, subject) in ABLATION_NAMES.items()
    for claim in (
        Claim(
            f"On CartPole with 32 distractors, TaskMet with {within} in its task loss beats "
            "MLE's return at 200k environment steps (our ablation)",
            "return", label, "mle", where={"task.distractors": 32},
        ),
        Claim(
            f"On CartPole with 32 distractors, {subject} beats TaskMet's one-step lookahead at "
            "200k environment steps (our ablation)",
            "return", label, "taskmet", where={"task.distractors": 32},
        ),
    )
)  # fmt: skip


def cartpole_grid() -> ReproductionGrid:
    """MLE against TaskMet's diagonal metric on CartPole with 0, 32 and 128 distractor
    dimensions, at the paper's budget of 200,000 environment steps, 3 seeds (18 runs of 9 to 13
    minutes, two at a time on 2 cores), and the two :data:`ABLATIONS` of :func:`lookahead_arm`
    at 32 distractors (6 runs more); the quick version is 2,000 steps with 32 distractors."""
    common = {"task": "cartpole-distractors", "checkpoint_every": 0}
    return ReproductionGrid(
        name="taskmet-cartpole",
        description="TaskMet's learned metric keeps model-based RL on CartPole working as "
        "distractor dimensions are added, where MLE's model degrades",
        sweeps=(
            *(
                as_arguments(
                    {**common, "task.distractors": "0,32,128", "seed": "0,1,2", "label": k, **v}
                )
                for k, v in cartpole_arms(200_000).items()
            ),
            *(
                as_arguments(
                    {
                        **common,
                        "task.distractors": 32,
                        "seed": "0,1,2",
                        "label": label,
                        **lookahead_arm(200_000, lookahead),
                    }
                )
                for label, lookahead in ABLATIONS.items()
            ),
        ),
        quick=tuple(
            as_arguments({**common, "task.distractors": 32, "seed": "0", "label": k, **v})
            for k, v in {
                **cartpole_arms(2_000),
                **{k: lookahead_arm(2_000, v) for k, v in ABLATIONS.items()},
            }.items()
        ),
        paper="TaskMet: task-driven metric learning for model learning (Bansal et al., "
        "NeurIPS 2023)",
        claims=CARTPOLE_CLAIMS + LOOKAHEAD_CLAIMS,
    )
