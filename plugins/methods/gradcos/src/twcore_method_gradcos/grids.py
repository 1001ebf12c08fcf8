"""GradCos's reproduction grid for ``twcore reproduce`` (the paper's auxiliary-task claims).

``mnist-aux`` with scarce main labels (:data:`SCARCE`) and a harmful auxiliary (random labels),
a helpful one (the digit modulo 5) or all three (helpful, unrelated, harmful), and
``multimnist`` (main: the left digit, auxiliary:
the right one); main-only, the plain sum and both GradCos variants; the same model (mlp),
optimiser (Adam 1e-3), batch (64) and steps for all.
"""

from __future__ import annotations

from typing import Any

from twcore.contract.grids import Claim, ReproductionGrid, as_arguments, seeds

SCARCE = {"task": "mnist-aux", "task.train_size": 3000, "task.main_labels": 300}
"""The target task with scarce labels: 300 of 3,000 training digits keep their digit, while the
auxiliaries are labelled on all 3,000 (auxiliaries drawn from more data than the target, where
the paper's question, whether an auxiliary helps or hurts, has a visible answer; with all 1,000
digits labelled, the plain sum moved main accuracy by at most 1.3 points)."""
AUXILIARIES = "[harmful],[helpful],[helpful,unrelated,harmful]"
BENCHMARKS: dict[str, dict[str, Any]] = {
    "mnist-aux": {**SCARCE, "task.auxiliaries": AUXILIARIES},
    "multimnist": {"task": "multimnist", "task.main": "left"},
}
SEEDS = seeds(10)
"""Ten seeds. At three, the ledger's paired t-tests left claims of this grid inconclusive that,
by its own estimate, 4 and 6 seeds would decide (the ledger of commit b23402c); the count was
raised once, for every arm alike, before the added seeds ran."""
FULL = {"model": "mlp", "steps": 1000, "eval_every": 100, "seed": SEEDS}
QUICK = {**FULL, "steps": 300, "seed": "0"}
VARIANTS: dict[str, dict[str, Any]] = {
    "main-only": {"method": "ew", "method.objectives": ["main"]},
    "plain-sum": {"method": "ew"},
    "gradcos-weighted": {"method": "gradcos"},
    "gradcos-unweighted": {"method": "gradcos", "method.variant": "unweighted"},
}
HARMFUL = {**SCARCE, "task.auxiliaries": "[harmful]"}
HELPFUL = {**SCARCE, "task.auxiliaries": "[helpful]"}
CLAIMS = (
    Claim(
        "With a harmful auxiliary, the weighted GradCos stays within 1 point of main-only's "
        "accuracy",
        "main_acc", "gradcos-weighted", "main-only", where=HARMFUL, margin=-0.01,
    ),
    Claim(
        "With a harmful auxiliary, the weighted GradCos beats the plain sum",
        "main_acc", "gradcos-weighted", "plain-sum", where=HARMFUL,
    ),
    Claim(
        "With a helpful auxiliary, the weighted GradCos beats main-only",
        "main_acc", "gradcos-weighted", "main-only", where=HELPFUL,
    ),
    Claim(
        "With a helpful auxiliary, the weighted GradCos is no worse than the plain sum "
        "(within 1 point)",
        "main_acc", "gradcos-weighted", "plain-sum", where=HELPFUL, margin=-0.01,
        reading="GradCos keeps only about half of the plain sum's gain from the helpful "
        "auxiliary, and uses a small fraction of that auxiliary's gradient: its weight on it, "
        "max(0, cosine of the two gradients), averages 0.10 over training (the harmful "
        "auxiliary's 0.02) — the README's reading: the rule that sheds the harm sheds much of "
        "the help too (the "
        "weights figure of `plugins/methods/gradcos/docs/report.md`; the "
        "GradCos README, Reproduction)",
    ),
    Claim(
        "The benchmark: the plain sum loses to main-only with the harmful auxiliary",
        "main_acc", "main-only", "plain-sum", where=HARMFUL,
    ),
    Claim(
        "The benchmark: the plain sum gains over main-only from the helpful auxiliary",
        "main_acc", "plain-sum", "main-only", where=HELPFUL,
    ),
)  # fmt: skip


def sweeps(
    settings: dict[str, Any], benchmarks: tuple[dict[str, Any], ...] = tuple(BENCHMARKS.values())
) -> tuple[tuple[str, ...], ...]:
    """One sweep per benchmark and variant."""
    return tuple(
        as_arguments({**benchmark, **settings, "label": label, **variant})
        for benchmark in benchmarks
        for label, variant in VARIANTS.items()
    )


def reproduction_grid() -> ReproductionGrid:
    """Main-only, the plain sum and both GradCos variants on mnist-aux with scarce main labels
    (harmful, helpful, all three auxiliaries) and MultiMNIST, 10 seeds; the quick version is the
    harmful auxiliary, one seed, 300 steps."""
    return ReproductionGrid(
        name="gradcos-auxiliary",
        description="GradCos stays near main-only with a harmful auxiliary, where the plain sum "
        "falls below it, and is at least as good with a helpful one",
        sweeps=sweeps(FULL),
        quick=sweeps(QUICK, (HARMFUL,)),
        paper="GradCos: adapting auxiliary losses using gradient similarity (Du et al.)",
        claims=CLAIMS,
    )
