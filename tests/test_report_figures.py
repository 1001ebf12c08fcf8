"""The report's figures draw what the tables say: bands are ±1 sample std over seeds computed
by hand, n is in every legend, legends sit outside the data, weights are smoothed with the raw
series behind, main/auxiliary tasks get the main-metric view, and every format is written."""

from __future__ import annotations

import json
import statistics
import struct
from pathlib import Path

import numpy as np
import pytest

from twcore.contract.errors import UsageError
from twcore.orchestration.cli.main import main
from twcore.orchestration.report import collect_runs, write_report
from twcore.orchestration.report.curves import moving_average, sample_std, seed_curve
from twcore.orchestration.report.plots import (
    FigureStyle,
    average_vs_worst,
    learned_weights,
    main_metric,
    metric_over_steps,
)

# (method, seed) -> validation main_acc at steps 10, 20, 30; test (main_acc, avg_acc, worst_acc)
CURVES = {
    ("ew", 0): ([0.50, 0.60, 0.70], (0.70, 0.60, 0.50)),
    ("ew", 1): ([0.40, 0.65, 0.80], (0.80, 0.62, 0.44)),
    ("gradcos", 0): ([0.55, 0.75, 0.85], (0.85, 0.70, 0.55)),
    ("gradcos", 1): ([0.45, 0.70, 0.90], (0.90, 0.66, 0.42)),
    ("gradcos", 2): ([0.50, 0.80, 0.95], (0.95, 0.72, 0.49)),
}
ZERO_ONE = [1, 0, 0, 1, 1, 1, 0, 1, 0, 0] * 8  # an unweighted GradCos weight: 0 or 1 each step


def _sweep(root: Path, roles: tuple[str, str]) -> Path:
    for (method, seed), (curve, (main_acc, avg_acc, worst_acc)) in CURVES.items():
        run_dir = root / f"{method}-{seed}"
        run_dir.mkdir(parents=True)
        summary = {
            "status": "completed",
            "config": {"method": {"name": method}, "task": {"name": "toy"}, "seed": seed},
            "task": {
                "primary_metric": "main_acc",
                "summary_metrics": ["main_acc", "avg_acc", "worst_acc"],
                "metric_directions": {"main_acc": "max", "avg_acc": "max", "worst_acc": "max"},
                "objectives": [
                    {"name": "main", "role": roles[0]},
                    {"name": "aux", "role": roles[1]},
                ],
            },
            "metrics": {"test": {"main_acc": main_acc, "avg_acc": avg_acc, "worst_acc": worst_acc}},
        }
        (run_dir / "summary.json").write_text(json.dumps(summary))
        lines = [
            json.dumps({"step": s, "val/main_acc": v})
            for s, v in zip((10, 20, 30), curve, strict=True)
        ]
        if method == "gradcos":
            lines += [
                json.dumps({"step": 100 + i, "train/weight/main": 1.0, "train/weight/aux": w})
                for i, w in enumerate(ZERO_ONE)
            ]
        (run_dir / "metrics.jsonl").write_text("\n".join(lines))
    return root


def _groups(root: Path):
    records, _ = collect_runs(root)
    groups: dict[tuple[str, ...], list] = {}
    for record in sorted(records, key=lambda r: (r.method, r.seed)):
        groups.setdefault((record.method,), []).append(record)
    return groups


@pytest.fixture
def main_aux(tmp_path: Path) -> Path:
    return _sweep(tmp_path / "main-aux", ("main", "auxiliary"))


@pytest.fixture
def peers(tmp_path: Path) -> Path:
    return _sweep(tmp_path / "peers", ("peer", "peer"))


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_sample_std_and_moving_average_match_hand_computation():
    values = np.array([[1.0, 2.0, 4.0], [3.0, 2.0, 1.0]])
    assert sample_std(values) == pytest.approx(
        [statistics.stdev([1, 3]), 0.0, statistics.stdev([4, 1])]
    )
    assert sample_std(values[:1]).tolist() == [0.0, 0.0, 0.0]
    series = np.array(ZERO_ONE, dtype=float)
    window = 4
    by_hand = [
        statistics.fmean(ZERO_ONE[max(0, i - window + 1) : i + 1]) for i in range(len(ZERO_ONE))
    ]
    assert moving_average(series, window) == pytest.approx(by_hand)
    assert moving_average(series[None], 1)[0] == pytest.approx(series)


def test_the_curve_band_is_one_sample_std_and_the_legend_names_n_outside_the_axes(main_aux):
    groups = _groups(main_aux)
    figure = metric_over_steps("toy", groups)
    axis = figure.axes[0]
    figure.canvas.draw()
    legend = axis.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["ew (n=2)", "gradcos (n=3)"]
    assert not _overlaps(legend.get_window_extent(), axis.get_window_extent())
    gradcos = np.array([CURVES[("gradcos", s)][0] for s in range(3)])
    mean = gradcos.mean(axis=0)
    std = np.array([statistics.stdev(column) for column in gradcos.T])
    band = axis.collections[1].get_paths()[0].vertices  # gradcos's fill_between
    expected = {*np.round(mean - std, 9), *np.round(mean + std, 9)}
    assert set(np.round(band[:, 1], 9)) == expected
    assert axis.get_ylabel() == "main_acc (higher is better)"


def test_a_main_auxiliary_task_shows_the_main_metric_not_average_against_worst(main_aux, peers):
    groups = _groups(main_aux)
    assert average_vs_worst("toy", groups) is None
    figure = main_metric("toy", groups)
    axis = figure.axes[0]
    assert [t.get_text() for t in axis.get_yticklabels()] == ["ew (n=2)", "gradcos (n=3)"]
    values = [CURVES[("gradcos", s)][1][0] for s in range(3)]
    bars = axis.containers[1]  # gradcos's errorbar
    (x,), (y,) = bars.lines[0].get_data()
    assert x == pytest.approx(statistics.fmean(values)) and y == 1
    segment = bars.lines[2][0].get_segments()[0]
    assert segment[1][0] - segment[0][0] == pytest.approx(2 * statistics.stdev(values))
    assert main_metric("toy", _groups(peers)) is None


def test_peer_tasks_keep_the_trade_off_plot_with_a_legend(peers):
    figure = average_vs_worst("toy", _groups(peers))
    axis = figure.axes[0]
    figure.canvas.draw()
    legend = axis.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["ew (n=2)", "gradcos (n=3)"]
    assert not _overlaps(legend.get_window_extent(), axis.get_window_extent())
    assert not axis.texts  # rows are named in the legend, not written over the markers


def test_zero_one_weights_are_smoothed_with_the_raw_series_faint_behind(main_aux):
    figure = learned_weights("toy", _groups(main_aux))
    (axis,) = figure.axes
    lines = {(round(line.get_alpha() or 1.0, 2), line.get_color()): line for line in axis.lines}
    raw = lines[(0.25, "C1")].get_ydata()  # aux, the task's second objective
    smoothed = lines[(1.0, "C1")].get_ydata()
    assert raw == pytest.approx(ZERO_ONE)
    window = len(ZERO_ONE) // 25
    assert smoothed == pytest.approx(moving_average(np.array(ZERO_ONE, dtype=float), window))
    assert axis.get_title() == "gradcos (n=3)"
    legend = axis.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["main", "aux"]


def test_formats_and_dpi_are_honoured(main_aux, tmp_path):
    out = tmp_path / "out"
    report = write_report(
        [main_aux], out_dir=out, wandb=False, style=FigureStyle(("png", "pdf", "svg"), dpi=100)
    )
    magic = {".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}
    for image in report.images:
        for suffix, start in magic.items():
            assert image.with_suffix(suffix).read_bytes()[: len(start)] == start
    low = _png_width(out / "toy_curve.png")
    write_report([main_aux], out_dir=tmp_path / "sharp", wandb=False, style=FigureStyle(dpi=200))
    assert _png_width(tmp_path / "sharp" / "toy_curve.png") == pytest.approx(2 * low, rel=0.02)
    assert sorted(p.name for p in report.images) == [
        "toy_curve.png",
        "toy_main.png",
        "toy_weights.png",
    ]


def test_a_bad_format_is_a_one_line_usage_error(main_aux, capsys):
    with pytest.raises(UsageError, match="--format gif: choose from png, pdf, svg"):
        FigureStyle(("gif",))
    assert main(["report", str(main_aux), "--no-wandb", "--format", "png,gif"]) == 2
    assert "--format gif: choose from png, pdf, svg" in capsys.readouterr().err


def _png_width(path: Path) -> int:
    return struct.unpack(">I", path.read_bytes()[16:20])[0]


def test_seed_curves_use_the_steps_every_seed_logged():
    logs = [
        [{"step": 1, "k": 1.0}, {"step": 2, "k": 2.0}, {"step": 3, "k": 3.0}],
        [{"step": 2, "k": 4.0}, {"step": 3, "k": float("nan")}],
    ]
    curve = seed_curve(logs, "k")
    assert curve.steps.tolist() == [2] and curve.values.tolist() == [[2.0], [4.0]]
    assert seed_curve(logs, "missing") is None


def test_every_committed_figure_has_the_command_that_recreates_it():
    """``benchmarks/figures.py`` is the one command that re-creates the repository's figures:
    each committed figure belongs to exactly one of its jobs, and each job's figures exist."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "figures.py"
    spec = importlib.util.spec_from_file_location("benchmark_figures", path)
    figures = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = figures  # dataclasses look their module up while being defined
    spec.loader.exec_module(figures)
    listed = [figure for job in figures.JOBS for figure in job.figures]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == figures.committed_figures()


def test_a_figure_job_keeps_its_runs_only_when_asked(tmp_path, monkeypatch):
    """A reproduction job removes its run directory before it runs (a fresh reproduction);
    ``keep_runs`` leaves the completed runs there for ``twcore reproduce`` to reuse. Its report
    files are replaced either way, and anything else in its report directory stays."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "figures.py"
    spec = importlib.util.spec_from_file_location("benchmark_figures_keep", path)
    figures = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = figures
    spec.loader.exec_module(figures)
    monkeypatch.setattr(figures, "ROOT", tmp_path)
    job = figures.FigureJob("job", (sys.executable, "-c", "pass"), (), 0.0, ("runs/grid",), "docs")
    for keep, survives in ((True, True), (False, False)):
        (tmp_path / "runs/grid/seed-0").mkdir(parents=True, exist_ok=True)
        (tmp_path / "runs/grid/seed-0/summary.json").write_text("{}")
        (tmp_path / "docs").mkdir(exist_ok=True)
        (tmp_path / "docs/report.md").write_text("old report")
        (tmp_path / "docs/README.md").write_text("kept")
        figures.run_job(job, keep_runs=keep)
        assert (tmp_path / "runs/grid/seed-0/summary.json").exists() is survives
        assert not (tmp_path / "docs/report.md").exists()
        assert (tmp_path / "docs/README.md").read_text() == "kept"


def test_figures_name_a_swept_value_with_its_key(tmp_path, monkeypatch):
    """A legend says ``optim.lr=0.001``, not ``0.001`` (the table has the key in its header);
    labels and method names stay as they are."""
    from twcore.orchestration.report import plots
    from twcore.orchestration.report.task_tables import figure_label

    assert figure_label(["label", "optim.lr"], ("paper", "0.001")) == ("paper", "optim.lr=0.001")
    assert figure_label(["method"], ("gradcos",)) == ("gradcos",)
    root = tmp_path / "sweep"
    for lr in ("0.001", "0.01"):
        run_dir = root / f"lr-{lr}"
        run_dir.mkdir(parents=True)
        summary = {
            "status": "completed",
            "config": {
                "method": {"name": "ew"},
                "task": {"name": "toy"},
                "seed": 0,
                "optim": {"lr": float(lr)},
            },
            "task": {"primary_metric": "acc", "summary_metrics": ["acc"], "objectives": []},
            "metrics": {"test": {"acc": 0.5}},
        }
        (run_dir / "summary.json").write_text(json.dumps(summary))
    seen = []
    monkeypatch.setattr(plots, "PLOTS", {"spy": lambda task, groups: seen.append(list(groups))})
    write_report([root], wandb=False)
    assert seen == [[("optim.lr=0.001",), ("optim.lr=0.01",)]]


def test_rows_beyond_ten_colours_get_another_marker():
    from twcore.orchestration.report.plots import series_style

    styles = [tuple(series_style(index).items()) for index in range(20)]
    assert len(set(styles)) == 20
    assert series_style(3)["color"] == series_style(13)["color"]


def test_a_labelled_sweep_that_varies_the_method_keeps_a_method_column():
    from twcore.orchestration.report.task_tables import row_keys

    assert row_keys(["method", "seed"], labelled=True) == ["label", "method"]
    assert row_keys(["seed"], labelled=True) == ["label"]
    assert row_keys(["seed", "task"]) == ["method"]
