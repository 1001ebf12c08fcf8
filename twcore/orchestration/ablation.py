"""Run an ablation and write its table: the diagnostic scripts behind the claims' readings.

    run_ablation({"task": "my-task", "method": "my-method", "method.strength": "0,0.5",
                  "seed": "0,1,2"}, out=Path("runs/my-ablation"), arm="method.strength",
                 control="0", metrics={"acc": "max"}, intro="My method's strength: ...")

One sweep of `setting` into `out` on the local backend (completed runs there are reused), then
:func:`~twcore.orchestration.report.ablation.ablation_table` of its runs under `intro`, printed
and written to `table` where given.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from twcore.contract.grids import as_arguments
from twcore.orchestration.backends import SweepOptions
from twcore.orchestration.report.ablation import ablation_table
from twcore.orchestration.sweep import run_sweep


def sweep_into(
    setting: Mapping[str, object],
    out: Path,
    *,
    workers: int = 2,
    options: SweepOptions | None = None,
) -> None:
    """Run the sweep `setting` (``key: "a,b"`` values, as a grid's) into `out`, W&B off;
    completed runs there are reused. `options`: how it runs (default: the local backend,
    `workers` trials at once)."""
    arguments = as_arguments({**setting, "run_dir": str(out), "wandb.enabled": False})
    run_sweep(arguments, options=options or SweepOptions(backend="local", workers=workers))


def run_ablation(
    setting: Mapping[str, object],
    *,
    out: Path,
    arm: str,
    control: str,
    metrics: Mapping[str, str],
    intro: str,
    group: str = "",
    workers: int = 2,
    table: Path | None = None,
    options: SweepOptions | None = None,
) -> str:
    """:func:`sweep_into` `out`, then return, print and write to `table` the ablation table of
    `arm` against `control` of its runs."""
    sweep_into(setting, out, workers=workers, options=options)
    text = f"{intro}\n\n" + ablation_table(
        out, arm=arm, control=control, metrics=metrics, group=group
    )
    print(text, end="")
    if table is not None:
        table.write_text(text, encoding="utf-8")
    return text
