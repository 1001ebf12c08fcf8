"""CAGrad's radius c on MultiMNIST: does the conflict-averse step cost the average accuracy?

    python3 plugins/methods/mtl/benchmarks/cagrad_radius.py [--out runs/cagrad-radius]
        [--radii 0 0.1 0.4] [--seeds 10] [--workers 2]
        [--table plugins/methods/mtl/docs/cagrad_radius.md]

The ``mtl-weightings`` grid's MultiMNIST setting (cnn, 1,000 steps, evaluated every 250), with
CAGrad at each radius c (0.4 is the paper's and the default) and seeds 0 to ``--seeds`` − 1, as
one sweep (completed runs under ``--out`` are reused). At c = 0 CAGrad's step is the average
gradient, equal weighting's step, so the c = 0 arm is the control, paired by seed with each
other radius (the same data order and initialisation). Prints, and writes to ``--table``, each
radius's test metrics (mean ± sample std) and its advantage over c = 0 in average accuracy by
the claims ledger's paired test (:mod:`twcore.orchestration.ablation`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from twcore_method_mtl.grids import FULL, TASKS

from twcore.orchestration.ablation import run_ablation
from twcore.orchestration.report.ledger import same_value

SETTING = {**TASKS["multimnist"], **FULL, "method": "cagrad"}
"""The grid's MultiMNIST runs (``twcore_method_mtl.grids``), CAGrad only."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/cagrad-radius"))
    parser.add_argument("--radii", nargs="+", default=["0", "0.1", "0.4"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--table", type=Path, default=None, help="also write the table here")
    options = parser.parse_args(argv)
    if not any(same_value(radius, "0") for radius in options.radii):
        parser.error("--radii must include 0 (the control)")
    command = (
        "python3 plugins/methods/mtl/benchmarks/cagrad_radius.py --radii "
        f"{' '.join(options.radii)} --seeds {options.seeds}"
    )
    run_ablation(
        {
            **SETTING,
            "method.c": ",".join(options.radii),
            "seed": ",".join(str(s) for s in range(options.seeds)),
        },
        out=options.out,
        arm="method.c",
        control="0",
        metrics={"avg_acc": "max", "main_acc": "max", "worst_acc": "max"},
        intro=f"CAGrad's radius c on MultiMNIST (`{command}`): test metrics, mean ± sample std "
        "over seeds, and the advantage over c = 0 (the average gradient: equal weighting's "
        "step) in average accuracy, paired by seed, with its 90 % confidence interval.",
        workers=options.workers,
        table=options.table,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
