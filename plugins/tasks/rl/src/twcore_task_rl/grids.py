"""The RL auxiliary-loss experiment as a grid for ``twcore reproduce``."""

from __future__ import annotations

from twcore.contract.grids import ReproductionGrid, as_arguments

FULL = {
    "task": "gridworld-aux",
    "task.auxiliaries": "[random],[reward]",
    "model": "mlp",
    "model.hidden": [16],
    "steps": 2000,
    "eval_every": 250,
    "seed": "0,1,2,3,4",
}
QUICK = {**FULL, "task.auxiliaries": "[random]", "steps": 1000, "seed": "0"}
VARIANTS = {
    "main-only": {"method": "ew", "method.objectives": ["main"]},
    "plain-sum": {"method": "ew"},
    "gradcos-weighted": {"method": "gradcos"},
}


def reproduction_grid() -> ReproductionGrid:
    """Main-only, the plain sum and GradCos on gridworld-aux with a harmful or a helpful
    auxiliary (``benchmarks/reproduce.py`` adds GradCos unweighted and the curves plot)."""
    return ReproductionGrid(
        name="gridworld-auxiliary",
        description="in RL, GradCos keeps a harmful auxiliary from derailing Q-learning",
        sweeps=tuple(as_arguments({**FULL, "label": k, **v}) for k, v in VARIANTS.items()),
        quick=tuple(as_arguments({**QUICK, "label": k, **v}) for k, v in VARIANTS.items()),
    )
