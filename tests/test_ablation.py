"""The ablation table behind the claims' readings: arms of a sweep against a control arm, by
the claims ledger's paired test."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from scipy import stats

from tests.test_claims_ledger import _claimed_registry
from twcore.orchestration.ablation import run_ablation
from twcore.orchestration.backends import SweepOptions
from twcore.orchestration.registry import use_registry
from twcore.orchestration.report.ablation import ablation_table


def write_run(
    root: Path,
    c: float,
    group: int,
    seed: int,
    acc: float,
    loss: float,
    status: str = "completed",
    name: str = "",
) -> None:
    run = root / (name or f"c{c}-g{group}-s{seed}")
    run.mkdir(parents=True)
    summary = {
        "config": {
            "seed": seed,
            "method": {"name": "m", "c": c},
            "task": {"name": "t", "d": group},
        },
        "metrics": {"test": {"acc": acc, "loss": loss}},
        "status": status,
    }
    (run / "summary.json").write_text(json.dumps(summary))


CONTROL = [0.80, 0.82, 0.81, 0.79]
TREATED = [0.78, 0.81, 0.78, 0.78]


def rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in text.splitlines()[2:]
        if line.startswith("|")
    ]


def test_each_arm_is_compared_with_the_control_by_a_paired_t_test(tmp_path: Path) -> None:
    for seed, (control, treated) in enumerate(zip(CONTROL, TREATED, strict=True)):
        write_run(tmp_path, 0.0, 0, seed, control, 1 - control)
        write_run(tmp_path, 0.4, 0, seed, treated, 1 - treated)
    text = ablation_table(
        tmp_path, arm="method.c", control="0", metrics={"acc": "max", "loss": "min"}
    )
    header = text.splitlines()[0]
    assert "| did not finish | advantage over method.c=0 in acc |" in header
    control, treated = rows(text)
    assert control[:2] == ["0.0", "4"] and control[-2:] == ["0", "–"]
    mean, spread = statistics.fmean(TREATED), statistics.stdev(TREATED)
    assert treated[:3] == ["0.4", "4", f"{mean:.4f} ± {spread:.4f}"]
    # The advantage and its interval, by hand: a paired t interval of the seeds' differences.
    differences = [t - c for t, c in zip(TREATED, CONTROL, strict=True)]
    effect = statistics.fmean(differences)
    half = stats.t.ppf(0.95, 3) * statistics.stdev(differences) / math.sqrt(4)
    assert treated[-1] == (
        f"{effect:+.4f} [{effect - half:+.4f}, {effect + half:+.4f}] (paired t-test, n=4: "
        "does not hold)"
    )


def test_a_lower_is_better_metric_and_groups_compare_within_each_group(tmp_path: Path) -> None:
    for group, shift in ((0, 0.0), (60, 0.5)):
        for seed, (control, treated) in enumerate(zip(CONTROL, TREATED, strict=True)):
            write_run(tmp_path, 0.0, group, seed, 0.5, control + shift)
            write_run(tmp_path, 0.4, group, seed, 0.5, treated + shift)
    text = ablation_table(
        tmp_path, arm="method.c", control="0.0", metrics={"loss": "min"}, group="task.d"
    )
    table = rows(text)
    assert [row[:2] for row in table] == [["0", "0.0"], ["0", "0.4"], ["60", "0.0"], ["60", "0.4"]]
    # A lower loss is the advantage: positive, the same in both groups (the shift cancels).
    effect = -statistics.fmean(t - c for t, c in zip(TREATED, CONTROL, strict=True))
    assert table[1][-1].startswith(f"{effect:+.4f} [") and effect > 0
    assert table[3][-1].split(" [")[0] == table[1][-1].split(" [")[0]


def test_run_ablation_runs_the_sweep_and_writes_the_table_of_its_runs(tmp_path: Path) -> None:
    setting = {
        "method": "reference-method",
        "task": "reference-task",
        "model": "reference-model",
        "steps": "2,30",
        "seed": "0,1,2",
    }
    with use_registry(_claimed_registry()):
        text = run_ablation(
            setting,
            out=tmp_path / "runs",
            arm="steps",
            control="2",
            metrics={"main_acc": "max"},
            intro="An ablation.",
            table=tmp_path / "table.md",
            options=SweepOptions(),
        )
    assert (tmp_path / "table.md").read_text() == text and text.startswith("An ablation.\n\n")
    values: dict[str, list[float]] = {"2": [], "30": []}
    for path in sorted((tmp_path / "runs").glob("*/summary.json")):
        summary = json.loads(path.read_text())
        values[str(summary["config"]["steps"])].append(summary["metrics"]["test"]["main_acc"])
    short, long = rows(text.split("\n\n", 1)[1])
    assert short[:3] == [
        "2",
        "3",
        f"{statistics.fmean(values['2']):.4f} ± {statistics.stdev(values['2']):.4f}",
    ]
    assert long[:2] == ["30", "3"] and "(paired t-test, n=3: holds)" in long[-1]


def test_unfinished_runs_are_counted_and_a_verdict_for_their_arm_is_inconclusive(
    tmp_path: Path,
) -> None:
    for seed, (control, treated) in enumerate(zip(CONTROL, TREATED, strict=True)):
        write_run(tmp_path, 0.0, 0, seed, treated, 0.0)  # the control is now the worse arm
        write_run(tmp_path, 0.4, 0, seed, control, 0.0)
    write_run(tmp_path, 0.4, 0, 9, math.nan, 0.0, status="diverged")
    write_run(tmp_path, 0.4, 0, 10, math.nan, 0.0)  # finished, but its metric is not finite
    table = ablation_table(tmp_path, arm="method.c", control="0", metrics={"acc": "max"})
    treated_row = rows(table)[1]
    mean, spread = statistics.fmean(CONTROL), statistics.stdev(CONTROL)
    assert treated_row[1:4] == ["4", f"{mean:.4f} ± {spread:.4f}", "2"]
    # On the finished seeds it would hold; with two runs lost it is inconclusive, as in the ledger.
    assert treated_row[-1].endswith("inconclusive)")


def test_a_table_refuses_two_runs_of_a_seed_a_missing_control_and_no_metric(tmp_path: Path) -> None:
    write_run(tmp_path, 0.0, 0, 0, 0.5, 0.0)
    write_run(tmp_path, 10.0, 0, 0, 0.6, 0.0)
    write_run(tmp_path, 2.0, 0, 0, 0.6, 0.0)
    table = rows(ablation_table(tmp_path, arm="method.c", control="0", metrics={"acc": "max"}))
    assert [row[0] for row in table] == ["0.0", "2.0", "10.0"]  # numbers in numeric order
    with pytest.raises(ValueError, match=r"no run of the control method\.c=1"):
        ablation_table(tmp_path, arm="method.c", control="1", metrics={"acc": "max"})
    with pytest.raises(ValueError, match="at least one metric"):
        ablation_table(tmp_path, arm="method.c", control="0", metrics={})
    write_run(tmp_path, 2.0, 1, 0, 0.7, 0.0, name="another")  # differs in a key not grouped
    with pytest.raises(ValueError, match=r"two runs of method\.c=2\.0 have seed 0"):
        ablation_table(tmp_path, arm="method.c", control="0", metrics={"acc": "max"})
