"""Result tables: mean ± sample std over seeds and the best row per column, by hand."""

from __future__ import annotations

import math

import pytest

from twcore.orchestration.report.table import Cell, Table, lower_is_better


def test_cell_mean_and_sample_std_match_hand_computation():
    cell = Cell([0.5, 0.7, 0.9])
    assert cell.mean == pytest.approx(0.7)
    assert cell.std == pytest.approx(math.sqrt(((0.2**2) * 2) / 2))
    assert cell.format() == "0.7 ± 0.2"
    assert Cell([0.25]).format() == "0.25"
    assert Cell().format() == "–"


def test_best_row_respects_the_direction_of_each_metric():
    table = Table("t", ["method"], ["avg_acc", "avg_loss"])
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


def test_direction_of_metric_names():
    assert lower_is_better("worst_loss") and lower_is_better("test/mse/reg0")
    assert not lower_is_better("worst_acc") and not lower_is_better("ndq")
