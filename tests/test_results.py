"""Result tables: mean ± sample std over seeds and the best row per column, by hand."""

from __future__ import annotations

import math

import pytest

from twcore.orchestration.report.table import Cell, Table


def test_cell_mean_and_sample_std_match_hand_computation():
    cell = Cell([0.5, 0.7, 0.9])
    assert cell.mean == pytest.approx(0.7)
    assert cell.std == pytest.approx(math.sqrt(((0.2**2) * 2) / 2))
    assert cell.format() == "0.7 ± 0.2"
    assert Cell([0.25]).format() == "0.25"
    assert Cell().format() == "–"


def test_best_row_respects_the_direction_of_each_metric():
    table = Table(
        "t", ["method"], ["avg_acc", "avg_loss"], directions={"avg_acc": "max", "avg_loss": "min"}
    )
    table.add(("a",), {"avg_acc": 0.8, "avg_loss": 0.3})
    table.add(("b",), {"avg_acc": 0.9, "avg_loss": 0.5})
    assert table.best_rows() == {"avg_acc": ("b",), "avg_loss": ("a",)}
    markdown = table.to_markdown()
    assert "| a | 0.8 | **0.3** | 1 |" in markdown
    assert "| b | **0.9** | 0.5 | 1 |" in markdown


def test_missing_and_non_finite_values_are_left_out():
    table = Table("t", ["method"], ["avg_acc"])
    table.add(("a",), {"avg_acc": None})
    table.add(("a",), {"avg_acc": float("nan")})
    table.add(("a",), {"avg_acc": 0.5})
    assert table.rows[("a",)]["avg_acc"].values == [0.5]
    assert table.counts[("a",)] == 3


def test_records_and_wandb_columns_carry_mean_sample_std_and_n():
    """By hand: values 1, 2, 4 have mean 7/3 and sample std sqrt(((−4/3)² + (−1/3)² + (5/3)²)/2);
    one value has no sample std (null, not 0); a cell missing a value says its own n."""
    table = Table("t", ["method"], ["acc"], directions={"acc": "max"})
    for value in (1.0, 2.0, 4.0):
        table.add(("a",), {"acc": value})
    table.add(("b",), {"acc": 3.0})
    table.add(("b",), {"acc": None})
    std = math.sqrt(((4 / 3) ** 2 + (1 / 3) ** 2 + (5 / 3) ** 2) / 2)
    records = table.to_records()
    assert records[0]["n"] == 3 and records[0]["acc"]["mean"] == pytest.approx(7 / 3)
    assert records[0]["acc"]["std"] == pytest.approx(std)
    assert records[1]["acc"] == {"mean": 3.0, "std": None, "n": 1, "values": [3.0]}
    columns, rows = table.to_columns()
    assert columns == ["method", "acc", "acc std", "acc n", "n"]
    assert rows[0] == ["a", pytest.approx(7 / 3), pytest.approx(std), 3, 3]
    assert rows[1] == ["b", 3.0, None, 1, 2]
    assert "| b | **3 (n=1)** | 2 |" in table.to_markdown()
