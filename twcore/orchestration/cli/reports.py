"""``twcore report``: tables, figures and the W&B workspace of finished sweeps.

Kept apart from the training commands so that a report imports none of the engine: with
``--no-plots`` and ``--no-wandb`` it needs neither matplotlib nor wandb (the methods' panel
declarations, read for the workspace, may still import their plugins).
"""

from __future__ import annotations

import argparse

from twcore.orchestration.report import write_report
from twcore.orchestration.report.plots import FigureStyle


def report(options: argparse.Namespace) -> int:
    """``twcore report SWEEP_DIR ... [--out DIR] [--no-wandb] [--no-plots] [--format png,pdf,svg]
    [--dpi N]``"""
    style = FigureStyle(formats=tuple(options.format.split(",")), dpi=options.dpi)
    written = write_report(
        options.sweep_dirs,
        out_dir=options.out,
        wandb=not options.no_wandb,
        style=style,
        plots=not options.no_plots,
    )
    for table in written.tables:
        print(table.to_markdown())
    print(f"report written to {written.path} ({len(written.images)} figure(s))")
    return 0
