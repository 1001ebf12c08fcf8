"""DFL on budget allocation at several smoothings γ of its training decisions: is the smoothed
problem DFL trains through why it falls short of two-stage there?

    python3 plugins/methods/dfl/benchmarks/budget_smoothing_ablation.py
        [--out runs/dfl-budget-smoothing] [--smoothings 0.3 1 2] [--seeds 5] [--workers 2]
        [--table plugins/methods/dfl/docs/lodl/budget_smoothing_ablation.md]

The ``dfl-losses-lodl`` grid's DFL runs on budget allocation (mlp, 1,000 steps, the state of the
best validation decision quality kept, evaluated every 50), at each ``task.smoothing`` γ
(1 is the default and the grid's), seeds 0 to ``--seeds`` − 1, as one sweep (completed runs under
``--out`` are reused). A smaller γ makes the training decisions closer to the exact ones and
their gradients smaller; a larger one the reverse (the decision task's README tabulates both at
the true reach). Evaluation always scores the exact decisions. Prints, and writes to
``--table``, each γ's test metrics (mean ± sample std) and its advantage over γ = 1 in decision
quality by the claims ledger's paired test (:mod:`twcore.orchestration.ablation`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from twcore_method_dfl.grids import LODL_SETTINGS

from twcore.orchestration.ablation import run_ablation
from twcore.orchestration.report.ledger import same_value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/dfl-budget-smoothing"))
    parser.add_argument("--smoothings", nargs="+", default=["0.3", "1", "2"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--table", type=Path, default=None, help="also write the table here")
    options = parser.parse_args(argv)
    if not any(same_value(smoothing, "1") for smoothing in options.smoothings):
        parser.error("--smoothings must include 1 (the grid's γ, the control)")
    command = (
        "python3 plugins/methods/dfl/benchmarks/budget_smoothing_ablation.py --smoothings "
        f"{' '.join(options.smoothings)} --seeds {options.seeds}"
    )
    run_ablation(
        {
            "task": "budget-allocation",
            "model": "mlp",
            "method": "dfl",
            **LODL_SETTINGS,
            "task.smoothing": ",".join(options.smoothings),
            "seed": ",".join(str(s) for s in range(options.seeds)),
        },
        out=options.out,
        arm="task.smoothing",
        control="1",
        metrics={"ndq": "max", "mse": "min"},
        intro=f"DFL on budget allocation at several smoothings γ (`{command}`): test metrics, "
        "mean ± sample std over seeds, and the advantage over γ = 1 (the grid's) in decision "
        "quality, paired by seed, with its 90 % confidence interval.",
        workers=options.workers,
        table=options.table,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
