"""αVIL's reproduction grid for ``twcore reproduce``."""

from __future__ import annotations

from typing import Any

from twcore.contract.grids import ReproductionGrid, as_arguments

FULL = {
    "task": "mnist-aux",
    "task.auxiliaries": "[harmful],[helpful],[helpful,unrelated,harmful]",
    "model": "mlp",
    "steps": 1000,
    "eval_every": 100,
    "seed": "0,1,2",
}
QUICK = {**FULL, "task.auxiliaries": "[helpful,unrelated,harmful]", "steps": 320, "seed": "0"}
VARIANTS: dict[str, dict[str, Any]] = {
    "main-only": {"method": "ew", "method.objectives": ["main"]},
    "plain-sum": {"method": "ew"},
    "alphavil": {"method": "alphavil"},
}


def reproduction_grid() -> ReproductionGrid:
    """Main-only, the plain sum and αVIL with harmful, helpful and all three auxiliaries (the
    weights plot shows the learned task weights)."""
    return ReproductionGrid(
        name="alphavil-auxiliary",
        description="αVIL down-weights a harmful auxiliary below a helpful one and stays near "
        "main-only",
        sweeps=tuple(as_arguments({**FULL, "label": k, **v}) for k, v in VARIANTS.items()),
        quick=tuple(as_arguments({**QUICK, "label": k, **v}) for k, v in VARIANTS.items()),
    )
