"""An ablation's table: the arms of one sweep, each compared with a control arm by the claims
ledger's test (paired by seed), for the diagnostic scripts behind a claim's reading.

    table = ablation_table("runs/my-ablation", arm="method.strength", control="0",
                           metrics={"acc": "max", "loss": "min"})

Each row is one value of `arm` (within each value of `group`, if given): its test metrics (or
``last:KEY`` logged values), mean ± sample std over the finished runs' seeds, how many runs did
not finish, and its advantage over the control in the first metric (in its direction), with
the 90 % confidence interval and the verdict of
:func:`~twcore.orchestration.report.ledger.decide` (*holds*: the arm beats the control). As in
the ledger, a verdict in favour of an arm some of whose runs did not finish is inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from twcore.orchestration.engine.summary import finished
from twcore.orchestration.report.collect import RunRecord, config_value, read_runs
from twcore.orchestration.report.ledger import (
    ArmResult,
    Decision,
    decide,
    discount_unfinished,
    run_metric,
    same_value,
)


def _arm(records: Sequence[RunRecord], metric: str, label: str) -> ArmResult:
    """`metric` of the finished `records` by seed; the others, and finished runs without a
    finite value, count as unfinished. ValueError if two finished runs share a seed."""
    values: dict[int, float] = {}
    unfinished = 0
    for record in records:
        value = run_metric(record, metric) if finished(record.summary.get("status")) else None
        if value is None:
            unfinished += 1
        elif record.seed in values:
            raise ValueError(
                f"two runs of {label} have seed {record.seed}: the sweep varies a setting the "
                "table does not separate (give it as the group), or its directory holds runs of "
                "another sweep"
            )
        else:
            values[record.seed] = value
    seeds = sorted(values)
    return ArmResult(label, tuple(seeds), tuple(values[s] for s in seeds), unfinished)


def _spread(arm: ArmResult) -> str:
    if not arm.n:
        return "–"
    return f"{arm.mean:.4f} ± {arm.std:.4f}" if arm.n > 1 else f"{arm.mean:.4f}"


def _advantage(decision: Decision) -> str:
    low, high = decision.interval
    if not math.isfinite(low):
        return f"{decision.effect:+.4f} ({decision.reason or decision.verdict})"
    return f"{decision.effect:+.4f} [{low:+.4f}, {high:+.4f}] ({decision.test}: {decision.verdict})"


def _order(value: str) -> tuple[int, float, str]:
    """Numbers in numeric order, then text."""
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def ablation_table(
    sweep_dir: str | Path,
    *,
    arm: str,
    control: str,
    metrics: Mapping[str, str],
    group: str = "",
) -> str:
    """A markdown table of the runs under `sweep_dir`, one row per value of the config key `arm`
    (per value of `group` first, where given); `metrics` maps each metric to its direction
    (``max``/``min``), the first one compared with the `control` arm's. ValueError if `metrics`
    is empty, a group has no `control` arm, or two runs of a row share a seed."""
    if not metrics:
        raise ValueError("give at least one metric")
    by_row: dict[tuple[str, str], list[RunRecord]] = {}
    for record in read_runs(sweep_dir, completed=False):
        config = record.summary["config"]
        key = (config_value(config, group) if group else "", config_value(config, arm))
        by_row.setdefault(key, []).append(record)
    first, direction = next(iter(metrics.items()))
    head = [group] if group else []
    lines = [
        "| "
        + " | ".join(
            [
                *head,
                arm,
                "n",
                *metrics,
                "did not finish",
                f"advantage over {arm}={control} in {first}",
            ]
        )
        + " |",
        "|" + "---|" * (len(head) + 4 + len(metrics)),
    ]
    for grouped, value in sorted(by_row, key=lambda k: (_order(k[0]), _order(k[1]))):
        records = by_row[grouped, value]
        controls = [
            runs for (g, v), runs in by_row.items() if g == grouped and same_value(v, control)
        ]
        if not controls:
            where = f" where {group}={grouped}" if group else ""
            raise ValueError(f"no run of the control {arm}={control}{where} under {sweep_dir}")
        arms = {metric: _arm(records, metric, f"{arm}={value}") for metric in metrics}
        compared = "–"
        if not same_value(value, control):
            baseline = _arm(controls[0], first, f"{arm}={control}")
            decision = decide(arms[first], baseline, direction=direction)
            compared = _advantage(discount_unfinished(decision, arms[first], baseline))
        cells = [_spread(result) for result in arms.values()]
        row = [*([grouped] if group else []), value, str(arms[first].n), *cells]
        row += [str(arms[first].unfinished), compared]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
