"""TaskMet with its learned metric against the same loop with the metric fixed to the identity,
on budget allocation: is the learned metric what costs decision quality there?

    python3 plugins/methods/taskmet/benchmarks/identity_metric.py [--out runs/taskmet-identity]
        [--seeds 5] [--workers 2] [--table plugins/methods/taskmet/docs/identity_metric.md]

The ``taskmet-decision`` grid's TaskMet runs on budget allocation, plain and with LODL's 60
random extra features (mlp, 60 outer steps of 200 then 20 inner steps, validating every 2),
once with the metric the grid learns (``method.metric=auto``) and once with
``method.metric=identity``: the same inner training, outer loop, validation and selection of
the best state by validation task loss, with Λ = I, so the predictor fits plain squared error.
One sweep (completed runs under ``--out`` are reused), seeds 0 to ``--seeds`` − 1, and
beside it, for reference, the grid's two-stage runs on the same seeds and code. Prints, and
writes to ``--table``, each arm's test metrics (mean ± sample std) and the learned metric's
advantage over the identity in decision quality by the claims ledger's paired test
(:mod:`twcore.orchestration.ablation`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from twcore_method_taskmet.grids import MLP

from twcore.orchestration.ablation import run_ablation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/taskmet-identity"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--table", type=Path, default=None, help="also write the table here")
    options = parser.parse_args(argv)
    command = (
        f"python3 plugins/methods/taskmet/benchmarks/identity_metric.py --seeds {options.seeds}"
    )
    common = {"task": "budget-allocation", "task.extra_dims": "0,60", "model": "mlp"}
    seeds = {"seed": ",".join(str(s) for s in range(options.seeds))}
    text = run_ablation(
        {**common, **MLP["taskmet"], "method.metric": "auto,identity", **seeds},
        out=options.out / "taskmet",
        arm="method.metric",
        control="identity",
        metrics={"ndq": "max", "mse": "min"},
        group="task.extra_dims",
        intro="TaskMet on budget allocation with its learned metric (`auto`) and with the "
        f"identity (`{command}`): test metrics, mean ± sample std over seeds, and the learned "
        "metric's advantage over the identity in decision quality, paired by seed, with its 90 % "
        "confidence interval.",
        workers=options.workers,
    )
    text += "\n" + run_ablation(
        {**common, **MLP["two-stage"], **seeds},
        out=options.out / "two-stage",
        arm="method",
        control="two-stage",
        metrics={"ndq": "max", "mse": "min"},
        group="task.extra_dims",
        intro="Two-stage with the grid's settings on the same seeds and code, for reference:",
        workers=options.workers,
    )
    if options.table is not None:
        options.table.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
