"""L-DRO's reproduction grid for ``twcore reproduce`` (with ERM and group DRO)."""

from __future__ import annotations

from typing import Any

from twcore.contract.grids import ReproductionGrid, as_arguments

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


def reproduction_grid() -> ReproductionGrid:
    """ERM, group DRO and L-DRO on the paper's synthetic points (worst-case against average
    loss); ``benchmarks/reproduce.py`` adds many-task MNIST."""
    return ReproductionGrid(
        name="ldro-points",
        description="L-DRO trades a little average loss for a much lower worst-case loss, "
        "better than group DRO",
        sweeps=tuple(
            as_arguments({**POINTS, "eval_every": 50, "seed": "0,1,2", "label": k, **v})
            for k, v in VARIANTS.items()
        ),
        quick=tuple(
            as_arguments({**POINTS, "eval_every": 50, "steps": 200, "seed": "0", "label": k, **v})
            for k, v in VARIANTS.items()
        ),
    )
