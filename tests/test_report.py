"""``twcore report``, ``twcore reproduce`` and ``twcore bench``."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest
import torch

from twcore.contract.errors import ConfigError
from twcore.contract.grids import ReproductionGrid, as_arguments
from twcore.contract.hookspecs import hookimpl
from twcore.orchestration.bench import benchmark, matmul_flops_per_step, op_profile
from twcore.orchestration.cli.main import main
from twcore.orchestration.registry import PluginRegistry, PluginSource, use_registry
from twcore.orchestration.report import write_report
from twcore.orchestration.reproduction import run_reproduction
from twcore.orchestration.tracking.wandb_offline import read_offline_run
from twcore.testing.reference import ReferencePlugins

# Hand-made runs: (method, seed) -> (avg_acc, worst_acc, avg_loss) on the test split.
RUNS = {
    ("ew", 0): (0.80, 0.70, 0.50),
    ("ew", 1): (0.84, 0.60, 0.40),
    ("gradcos", 0): (0.90, 0.75, 0.45),
    ("gradcos", 1): (0.86, 0.77, 0.55),
    ("gradcos", 2): (0.88, 0.79, 0.35),
}


def _write_run(root: Path, method: str, seed: int, values: tuple[float, ...]) -> None:
    run_dir = root / f"method-{method}_seed-{seed}"
    run_dir.mkdir(parents=True)
    avg_acc, worst_acc, avg_loss = values
    summary = {
        "status": "completed",
        "config": {"method": {"name": method}, "task": {"name": "toy"}, "seed": seed},
        "task": {
            "primary_metric": "avg_acc",
            "summary_metrics": ["avg_acc", "worst_acc", "avg_loss"],
            "metric_directions": {"avg_acc": "max", "worst_acc": "max", "avg_loss": "min"},
            "objectives": [{"name": "main"}, {"name": "aux"}],
        },
        "metrics": {"test": {"avg_acc": avg_acc, "worst_acc": worst_acc, "avg_loss": avg_loss}},
        "steps_per_s": 40.0 if method == "ew" else 20.0,
        "model_updates": 30,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    lines = []
    for step in (10, 20, 30):
        record = {"step": step, "val/avg_acc": avg_acc * step / 30}
        if method == "gradcos":
            record |= {"train/weight/main": 1.0, "train/weight/aux": step / 100 + seed / 10}
        lines.append(json.dumps(record))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines))


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for (method, seed), values in RUNS.items():
        _write_run(root, method, seed, values)
    trials = [
        {"name": f"method-{m}_seed-{s}", "swept": {"method": m, "seed": str(s)}} for m, s in RUNS
    ]
    (root / "results.json").write_text(json.dumps({"tables": [], "trials": trials}))
    return root


def test_report_tables_match_hand_computed_means_and_mark_the_best(sweep_dir: Path) -> None:
    report = write_report([sweep_dir], wandb=False)
    (table,) = report.tables
    for method in ("ew", "gradcos"):
        cells = table.rows[(method,)]
        for index, metric in enumerate(("avg_acc", "worst_acc", "avg_loss")):
            values = [v[index] for (m, _), v in RUNS.items() if m == method]
            assert cells[metric].mean == pytest.approx(statistics.mean(values))
            assert cells[metric].std == pytest.approx(statistics.stdev(values))
    text = report.path.read_text()
    # the run columns: ms per step (1000 / steps_per_s) and model updates, never marked best
    assert "| avg_acc | worst_acc | avg_loss | ms_per_step | model_updates | n |" in text
    assert (
        "| gradcos | **0.88 ± 0.02** | **0.77 ± 0.02** | 0.45 ± 0.1 | 50 ± 0 | 30 ± 0 | 3 |" in text
    )
    assert "| ew | 0.82 ± 0.028 | 0.65 ± 0.071 | **0.45 ± 0.071** | 25 ± 0 | 30 ± 0 | 2 |" in text
    names = sorted(p.name for p in report.images)
    assert names == ["toy_average_vs_worst.png", "toy_curve.png", "toy_weights.png"]
    for name in names:
        assert (sweep_dir / name).read_bytes()[:4] == b"\x89PNG"
        assert f"]({name})" in text
    records = json.loads((sweep_dir / "report.json").read_text())
    assert records[0]["rows"][1]["avg_acc"]["values"] == [0.90, 0.86, 0.88]


def test_report_is_logged_to_an_offline_wandb_summary_run(sweep_dir: Path) -> None:
    report = write_report([sweep_dir])
    assert report.wandb_run is not None
    (offline,) = (sweep_dir / "wandb").glob(f"offline-run-*-{report.wandb_run}")
    run = read_offline_run(next(offline.glob("run-*.wandb")))
    logged = {key for record in run.history for key in record}
    assert {"table/toy", "plot/toy_curve", "plot/toy_weights"} <= logged


def test_report_cli_and_errors(sweep_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["report", str(sweep_dir), "--no-wandb", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.md").exists()
    assert "report written to" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "holds no completed run" in capsys.readouterr().err


# -- reproduce ------------------------------------------------------------------------------


class GridPlugin:
    """A plugin contributing two reproduction grids on the reference plugins."""

    @staticmethod
    @hookimpl
    def twcore_reproduction_grids(register) -> None:
        common = {
            "method": "reference-method",
            "task": "reference-task",
            "model": "reference-model",
            "steps": 200,
        }
        register(
            ReproductionGrid(
                name="reference-grid",
                description="the reference method over seeds",
                sweeps=(as_arguments({**common, "seed": "0,1,2"}),),
                quick=(as_arguments({**common, "seed": "0,1", "steps": 20}),),
            )
        )
        register(
            ReproductionGrid(
                name="labelled-grid",
                description="two labelled variants",
                sweeps=(),
                quick=(
                    as_arguments({**common, "label": "short", "steps": 10}),
                    as_arguments({**common, "label": "long", "steps": 30}),
                ),
            )
        )


class BrokenGridPlugin:
    @staticmethod
    @hookimpl
    def twcore_reproduction_grids(register) -> None:
        raise RuntimeError("grid plugin bug")


def _registry() -> PluginRegistry:
    registry = PluginRegistry(autoload=False)
    registry.add_plugin(ReferencePlugins(), PluginSource("reference"))
    registry.add_plugin(GridPlugin(), PluginSource("grids"))
    registry.add_plugin(BrokenGridPlugin(), PluginSource("broken-grids"))
    return registry


def test_reproduce_runs_every_grid_and_writes_one_report(tmp_path: Path, capsys) -> None:
    done = run_reproduction(
        quick=True,
        out_dir=tmp_path / "out",
        registry=_registry(),
        extra=["wandb.enabled=false"],
    )
    assert "grid plugin bug" in capsys.readouterr().err  # reported, the others still run
    assert [len(s.trials) for s in done.sweeps] == [2, 1, 1]
    assert all(t.status == "completed" for s in done.sweeps for t in s.trials)
    text = done.report.path.read_text()
    assert "4 completed run(s)" in text
    (table,) = done.report.tables
    # Rows by label, each run labelled with its grid.
    assert set(table.rows) == {
        ("reference-grid",),
        ("labelled-grid/short",),
        ("labelled-grid/long",),
    }
    assert table.counts[("reference-grid",)] == 2


def test_reproduce_cli_lists_grids_and_refuses_an_unknown_one(tmp_path: Path, capsys) -> None:
    with use_registry(_registry()):
        assert main(["reproduce", "--list"]) == 0
        out = capsys.readouterr().out
        assert "reference-grid: the reference method over seeds" in out
        code = main(["reproduce", "--only", "referense-grid", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "did you mean 'reference-grid'" in capsys.readouterr().err


def test_as_arguments_formats_values_for_the_command_line() -> None:
    arguments = as_arguments({"seed": "0,1", "method.objectives": ["main"], "keep_best": True})
    assert arguments == ("seed=0,1", "method.objectives=[main]", "keep_best=true")


# -- bench ----------------------------------------------------------------------------------


def test_bench_times_every_method_against_ew() -> None:
    result = benchmark(["task=toy-multitask"], ["gradcos", "taskmet"], steps=40, repeats=1)
    assert result.ratio("ew") == 1.0
    # TaskMet's step is an outer iteration: it runs its own 30 steps, not 40.
    assert result.steps == {"ew": 40, "gradcos": 40, "taskmet": 30}
    assert set(result.seconds) == {"ew", "gradcos", "taskmet"}
    assert all(seconds > 0 for seconds in result.seconds.values())
    assert result.outer_step == {"taskmet"}
    text = result.table("t").to_markdown(mark_best=False, show_count=False)
    assert "| taskmet (outer step) |" in text
    # Backward-pass equivalents: the baseline's is 1 by definition; the others are timings,
    # which depend on the machine's load, so only their presence is asserted here.
    assert 0 < result.forward < result.seconds["ew"]
    assert result.backward_equivalents("ew") == pytest.approx(1.0)
    assert 0 < result.backward_equivalents("gradcos") < float("inf")
    assert "backward_equivalents" in text


def test_bench_refuses_a_method_override() -> None:
    with pytest.raises(ConfigError, match="leave out method="):
        benchmark(["method=ew"], ["ew"], steps=1, repeats=1)


def test_matmul_flops_per_step_is_the_closed_form_of_a_plain_mlp_step(tmp_path: Path) -> None:
    """ew on digits (64 inputs, 10 classes) with one hidden layer of 8, batch 4: the forward
    pass is two matrix products, 2·B·(64·8 + 8·10) FLOPs; the backward pass computes both
    weight gradients (as many again) and the input gradient of the head only (2·B·8·10), not
    the images'. Set-up and the final evaluation cancel in the difference."""
    options = {
        "task": "digits",
        "method": "ew",
        "model": "mlp",
        "model.hidden": [8],
        "batch_size": 4,
        "eval_every": 0,
        "checkpoint_every": 0,
        "wandb.enabled": False,
    }
    batch = 4
    forward = 2 * batch * (64 * 8 + 8 * 10)
    expected = 2 * forward + 2 * batch * 8 * 10
    assert matmul_flops_per_step(options, short=2, long=5, root=tmp_path) == expected
    with pytest.raises(ValueError, match="short < long"):
        matmul_flops_per_step(options, short=3, long=3, root=tmp_path)


def test_runs_without_a_sweep_record_are_grouped_by_every_config_key_that_differs(
    tmp_path: Path,
) -> None:
    """Runs written by a script (no results.json): two learning rates are two rows, each over
    its own seeds; a method's options are not columns beside the method's name."""
    root = tmp_path / "scripted"
    accuracy = {(0.01, 0): 0.80, (0.01, 1): 0.82, (0.1, 0): 0.60, (0.1, 1): 0.64}
    for (lr, seed), acc in accuracy.items():
        run_dir = root / f"lr{lr}-seed{seed}"
        run_dir.mkdir(parents=True)
        config = {
            "method": {"name": "ew"},
            "task": {"name": "toy"},
            "seed": seed,
            "optim": {"lr": lr, "name": "adam"},
            "run_dir": str(run_dir),
            "wandb": {"group": f"g{seed}"},
        }
        summary = {
            "status": "completed",
            "config": config,
            "task": {"primary_metric": "avg_acc", "summary_metrics": ["avg_acc"], "objectives": []},
            "metrics": {"test": {"avg_acc": acc}},
        }
        (run_dir / "summary.json").write_text(json.dumps(summary))
    # A run of another method with its own option: one "method" key, not method.eta as well.
    other = root / "ldro"
    other.mkdir()
    config = {
        "method": {"name": "ldro", "eta": 0.1},
        "task": {"name": "toy"},
        "seed": 0,
        "optim": {"lr": 0.01, "name": "adam"},
    }
    (other / "summary.json").write_text(
        json.dumps(
            {
                "status": "completed",
                "config": config,
                "metrics": {"test": {"avg_acc": 0.7}},
                "task": {
                    "primary_metric": "avg_acc",
                    "summary_metrics": ["avg_acc"],
                    "objectives": [],
                },
            }
        )
    )

    report = write_report([root], wandb=False)
    (table,) = report.tables
    assert table.row_keys == ["method", "optim.lr"]
    rows = {row: cells["avg_acc"].values for row, cells in table.rows.items()}
    assert sorted(rows[("ew", "0.01")]) == [0.80, 0.82]
    assert sorted(rows[("ew", "0.1")]) == [0.60, 0.64]
    assert rows[("ldro", "0.01")] == [0.7]


def test_bench_times_with_the_threads_asked_for_and_restores_them(capsys, monkeypatch) -> None:
    # Three threads: more than this machine's cores, so no other rule of threads=auto would
    # choose it (OMP_NUM_THREADS, which the test session sets, would win over the pin).
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    arguments = ["bench", "--steps", "3", "--repeats", "1", "--threads", "3", "--baseline", "ew"]
    assert main([*arguments, "task=toy-multitask", "task.num_regression=3"]) == 0
    out = capsys.readouterr().out
    # the title says what was timed: K (three classification tasks, as by default, and three
    # regression tasks)
    assert "K = 6 objectives" in out and "3 torch thread(s)" in out
    assert "| gradcos |" in out
    assert torch.get_num_threads() == before
    assert main(["bench", "--threads", "0", "task=toy-multitask"]) == 2
    assert "--threads=0" in capsys.readouterr().err


def test_op_profile_lists_the_costliest_ops_of_a_step_beside_a_baseline(tmp_path: Path) -> None:
    common = {
        "task": "toy-multitask",
        "steps": 4,
        "eval_every": 0,
        "checkpoint_every": 0,
        "wandb.enabled": False,
    }
    text = op_profile(
        {**common, "method": "gradcos", "run_dir": str(tmp_path / "a")},
        4,
        baseline={**common, "method": "ew", "run_dir": str(tmp_path / "b")},
        rows=5,
    )
    lines = text.splitlines()
    assert lines[0].endswith("ms of op time per step; the largest:")
    table = [line for line in lines if line.startswith("| aten::")]
    assert 1 <= len(table) <= 5
    shares = [float(line.rsplit("|", 2)[1].strip().rstrip("%")) for line in table]
    assert shares == sorted(shares, reverse=True) and sum(shares) <= 100.5
    calls, baseline = (float(n) for n in re.findall(r"(\d+)", lines[-1])[-2:])
    assert calls > baseline > 0  # GradCos's step makes more calls than a plain one


def test_runs_of_different_sweeps_that_differ_in_a_fixed_setting_get_their_own_rows() -> None:
    """Two sweeps, each holding `task.size` at its own value under the same label: the report's
    rows keep them apart (neither sweep varied the key, so neither names it)."""
    from twcore.orchestration.report.collect import RunRecord
    from twcore.orchestration.report.task_tables import keys_merged_in_rows

    def record(size: int, seed: int, label: str = "a") -> RunRecord:
        config = {"label": label, "seed": seed, "task": {"name": "t", "size": size}}
        return RunRecord(Path(f"r{size}{seed}{label}"), {"config": config}, {"seed": str(seed)})

    runs = [record(size, seed) for size in (1, 2) for seed in (0, 1)]
    assert keys_merged_in_rows(runs, ["seed"]) == ["task.size"]
    # A setting that differs only between rows (labels) is no reason for another column.
    apart = [record(1, 0, "a"), record(1, 1, "a"), record(2, 0, "b"), record(2, 1, "b")]
    assert keys_merged_in_rows(apart, ["seed"]) == []


def test_an_option_older_runs_lack_does_not_split_them_from_the_runs_that_have_it() -> None:
    """A run recorded before its plugin gained an option has no value for it: the option
    separates runs only where the runs that have it disagree."""
    from twcore.orchestration.report.collect import RunRecord, differing_keys

    def record(seed: int, **task: object) -> RunRecord:
        config = {"seed": seed, "method": {"name": "ew"}, "task": {"name": "t", **task}}
        return RunRecord(Path(f"/runs/{seed}"), {"config": config}, {})

    older, newer = record(0), record(1, lookahead_terms=1)
    assert differing_keys([older, newer]) == ["seed"]
    assert differing_keys([older, newer, record(2, lookahead_terms=3)]) == [
        "seed",
        "task.lookahead_terms",
    ]
