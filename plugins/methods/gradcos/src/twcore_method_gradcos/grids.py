"""GradCos's reproduction grid for ``twcore reproduce`` (the paper's auxiliary-task claims)."""

from __future__ import annotations

from typing import Any

from twcore.contract.grids import ReproductionGrid, as_arguments

FULL = {
    "task": "mnist-aux",
    "task.auxiliaries": "[harmful],[helpful]",
    "model": "mlp",
    "steps": 1000,
    "eval_every": 100,
    "seed": "0,1,2",
}
QUICK = {**FULL, "task.auxiliaries": "[harmful]", "steps": 300, "seed": "0"}
VARIANTS: dict[str, dict[str, Any]] = {
    "main-only": {"method": "ew", "method.objectives": ["main"]},
    "plain-sum": {"method": "ew"},
    "gradcos-weighted": {"method": "gradcos"},
    "gradcos-unweighted": {"method": "gradcos", "method.variant": "unweighted"},
}


def reproduction_grid() -> ReproductionGrid:
    """Main-only, the plain sum and both GradCos variants, with a harmful or a helpful
    auxiliary (the full run of ``benchmarks/reproduce.py`` also covers MultiMNIST)."""
    return ReproductionGrid(
        name="gradcos-auxiliary",
        description="GradCos stays near main-only with a harmful auxiliary, where the plain sum "
        "falls below it, and is at least as good with a helpful one",
        sweeps=tuple(as_arguments({**FULL, "label": k, **v}) for k, v in VARIANTS.items()),
        quick=tuple(as_arguments({**QUICK, "label": k, **v}) for k, v in VARIANTS.items()),
    )
