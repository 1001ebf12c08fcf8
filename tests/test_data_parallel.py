"""Data-parallel runs (``nproc``): every method ends where a single process ends, with the same
global batch and data order; a killed process resumes exactly; process 0 alone writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import twcore

FIXTURES = Path(__file__).parent / "fixtures" / "data_parallel"


ABORTED_IN_TORCH = "terminate called without an active exception"
"""What a process of a gloo run prints when torch's C++ side aborts it (SIGABRT): seen once in
CI, mid-suite, in a launch that passed on every rerun; a launch that ends so is retried once."""


def torchrun(
    nproc: int, script: Path, *args: str, fresh: Callable[[], list[str]] | None = None
) -> subprocess.CompletedProcess[str]:
    """`script` as `nproc` processes under torchrun, with `args` (or, for each launch, the
    arguments `fresh` returns: new run directories). Each process's stderr goes to a log file,
    and a failed launch returns the tail of every process's log as its stderr (torchrun's own
    report names only the signal). A launch in which a process aborted in torch's C++ side
    (:data:`ABORTED_IN_TORCH`) is run once more, with a warning carrying the first logs."""
    done = _launch(nproc, script, fresh() if fresh else list(args))
    if done.returncode != 0 and ABORTED_IN_TORCH in done.stderr:
        warnings.warn(f"torchrun: a process aborted, launched again:\n{done.stderr}", stacklevel=2)
        done = _launch(nproc, script, fresh() if fresh else list(args))
    return done


def _launch(nproc: int, script: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="torchrun-") as logs:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command += [f"--nproc_per_node={nproc}", "--log-dir", logs, "--redirects", "2"]
        done = subprocess.run(
            [*command, str(script), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            tails = [
                f"--- {path.relative_to(logs)}:\n{path.read_text(errors='replace')[-2500:]}"
                for path in sorted(Path(logs).rglob("stderr.log"))
            ]
            done.stderr = "\n".join([*tails, "--- torchrun:", done.stderr[-1500:]])
    return done


@pytest.mark.parametrize("nproc", [2, 3])
def test_every_derivative_through_a_sharded_module_is_the_single_process_one(nproc: int) -> None:
    done = torchrun(nproc, FIXTURES / "collectives.py")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["world_size"] == nproc
    for name, gap in found["gaps"].items():
        assert gap < 1e-12, (name, gap)


SMALL_TASK = ["task.train_size=200", "task.val_size=100", "task.test_size=100"]
PLAIN_SGD = ["optim.name=sgd", "optim.lr=0.1"]
METHODS = {
    # method: (task, extra overrides, steps, parameter tolerance)
    "ew": ("toy-multitask", SMALL_TASK, 8, 1e-6),
    # A process sees only its rows, so a data-parallel run compares gradients on the rows path:
    # the single-process run takes it too (its default Gram path agrees to float32 rounding).
    "gradcos": ("toy-multitask", [*SMALL_TASK, "method.gradients=rows"], 8, 1e-6),
    "ldro": ("toy-multitask", SMALL_TASK, 8, 1e-6),
    "group-dro": ("toy-multitask", SMALL_TASK, 8, 1e-6),
    "alphavil": ("toy-multitask", SMALL_TASK, 8, 1e-6),  # one epoch end: one α fit
    "adalfl": ("toy-multitask", SMALL_TASK, 8, 1e-6),
    # The classic multitask weightings (the gradient-combining ones on their rows path, as
    # GradCos; mgda-ub on the trunk's output).
    **{
        name: ("toy-multitask", [*SMALL_TASK, "method.gradients=rows"], 8, 1e-6)
        for name in ("mgda", "pcgrad", "cagrad", "nash-mtl", "imtl", "aligned-mtl", "gradnorm")
    },
    **{name: ("toy-multitask", SMALL_TASK, 8, 1e-6) for name in ("mgda-ub", "uw", "rlw", "famo")},
    "dwa": ("toy-multitask", [*SMALL_TASK, "method.period=2"], 8, 1e-6),
    # TaskMet's inner loop amplifies float32 rounding: two single-process runs of this task
    # (3 outer steps), one with OMP_NUM_THREADS=1 and one with 2, end 4.9e-4 apart, so the
    # check is at that scale.
    "taskmet": ("cubic-topk", ["method.inner_steps_first=50", "method.inner_steps=20"], 2, 2e-3),
    # float16 with its loss scale (the "@" names the precision): every process unscales the same
    # global gradients, so all skip the steps one process skips (checked below; this run skips
    # from its third step). Each sums its rows' weight gradients in float16 before the
    # all-reduce, so the sums round differently than one process's, and Adam's normalised steps
    # carry that to coordinates with tiny gradients: the parameters end 1.8e-3 apart at most.
    "uw@16-mixed": ("toy-multitask", SMALL_TASK, 8, 3e-3),
    # Tasks whose stream acts in an environment (gridworld: with the model) and whose
    # evaluation plays episodes: each process acts alike on its own, and plays its share of
    # the episodes (the "/" names the task).
    "ew/gridworld-aux": ("gridworld-aux", [], 8, 1e-6),
    "ew/cartpole-distractors": ("cartpole-distractors", ["task.distractors=8"], 8, 1e-6),
    # The decision-focused losses: each process solves its share of the instances (training
    # and evaluation) and the decisions are gathered; knapsack's solver is exact and discrete,
    # portfolio's continuous and per instance (its covariance travels with the rows). On
    # portfolio, Adam turns SPO+'s float32 rounding into whole steps on coordinates whose
    # gradient is near 0: two single-process runs with 1 and 2 threads end 1.3e-3 apart with
    # Adam and 1.5e-7 apart with SGD, so these runs take SGD. SPO+'s exact solve is a
    # discontinuous function of the predictions (the optimum's support jumps): where a process's
    # share of the rows rounds its float32 predictions differently from the whole batch's (the
    # matrix product's kernel depends on the rows' count, and on the CPU), an instance's solution
    # can change. They ended within 1e-6 on the machine of earlier CI runs; on one with AVX2
    # and no AVX-512 1.4e-4 apart (1 and 2 threads of one process: 0), so its check is at that
    # scale.
    **{
        f"{name}/knapsack": ("knapsack", SMALL_TASK, 8, 1e-6)
        for name in ("spo-plus", "pfyl", "dpo", "nce", "ltr", "dfl")
    },
    **{
        f"{name}/portfolio": (
            "portfolio",
            [*SMALL_TASK, *PLAIN_SGD],
            8,
            1e-3 if name == "spo-plus" else 1e-6,
        )
        for name in ("spo-plus", "pfyl", "dfl", "two-stage")
    },
}


def _overrides(method: str, run_dir: Path, nproc: int) -> list[str]:
    task, extra, steps, _ = METHODS[method]
    name, _, precision = method.partition("/")[0].partition("@")
    return [
        f"method={name}",
        f"task={task}",
        *extra,
        *([f"precision={precision}"] if precision else []),
        f"steps={steps}",
        "batch_size=33",  # uneven over two processes
        "eval_every=4",
        f"nproc={nproc}",
        f"run_dir={run_dir}",
        "wandb.enabled=false",
    ]


def _parameters(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    return state["model"]


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every method's 2-process run, launched once (one torchrun for all of them)."""
    roots: list[Path] = []

    def fresh() -> list[str]:  # a launch again writes into new run directories
        roots.append(tmp_path_factory.mktemp("two"))
        listing = roots[-1] / "runs.json"
        listing.write_text(json.dumps([_overrides(m, roots[-1] / m, 2) for m in METHODS]))
        return [str(listing)]

    done = torchrun(2, FIXTURES / "runs.py", fresh=fresh)
    assert done.returncode == 0, done.stderr
    return roots[-1]


@pytest.mark.xdist_group("two-process-runs")  # one worker builds the module fixture
@pytest.mark.parametrize("method", list(METHODS))
def test_two_processes_end_where_one_ends(
    method: str, tmp_path: Path, two_process_runs: Path
) -> None:
    single = twcore.run(_overrides(method, tmp_path / "one", 1))
    two_dir = two_process_runs / method
    double = json.loads((two_dir / "summary.json").read_text())
    assert double["world_size"] == 2 and single.summary["world_size"] == 1
    assert double["steps"] == single.summary["steps"]
    tolerance = METHODS[method][3]
    one, two = _parameters(tmp_path / "one"), _parameters(two_dir)
    for name in one:
        assert torch.allclose(one[name], two[name], atol=tolerance, rtol=0), name
    for split, values in single.metrics.items():
        for key, value in values.items():
            assert double["metrics"][split][key] == pytest.approx(value, abs=50 * tolerance), key
    if "@16-mixed" in method:  # the same steps skipped, at the same loss scales
        schedules = [
            [
                (r["train/loss_scale"], r["train/skipped_steps"])
                for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                if "train/loss_scale" in r
            ]
            for run in (tmp_path / "one", two_dir)
        ]
        assert schedules[0] == schedules[1] and len(schedules[0]) == 8
        assert schedules[0][-1][1] > 0  # the check covers a skipped step


@pytest.mark.xdist_group("two-process-runs")
def test_acting_and_evaluation_episodes_need_no_collective(two_process_runs: Path) -> None:
    """The gridworld run's only all-gathers are its training step's two forward passes (the
    model's and its target network's): its acting in the environment and its evaluation
    episodes (split over the processes, their sums added in one all-reduce) run on their own."""
    summary = json.loads((two_process_runs / "ew/gridworld-aux" / "summary.json").read_text())
    assert summary["communication_per_step"]["all_gather_calls"] == 2.0


@pytest.mark.xdist_group("two-process-runs")
def test_decision_losses_solve_their_share_of_the_instances(two_process_runs: Path) -> None:
    """SPO+'s exact solve a step (2ŷ − y's; the true values' optima are stored with the task's
    data) is split over the processes and gathered: one all-gather, and one all-reduce of the
    failure flag, on top of what a method that solves nothing in training moves on the same
    task and schedule (``dfl``, whose training decisions are differentiable; ``two-stage``). A
    split that failed (a row's data not cut with it, as portfolio's covariance must be) would
    fall back to solving whole, with no all-gather."""

    def per_step(method: str) -> dict[str, float]:
        summary = json.loads((two_process_runs / method / "summary.json").read_text())
        return summary["communication_per_step"]

    for task, plain in (("knapsack", "dfl"), ("portfolio", "two-stage")):
        spo, other = per_step(f"spo-plus/{task}"), per_step(f"{plain}/{task}")
        assert spo["all_gather_calls"] - other["all_gather_calls"] == pytest.approx(1.0), task
        # and the failure flag
        assert spo["all_reduce_calls"] - other["all_reduce_calls"] == pytest.approx(1.0), task


KILLED = [
    "method=ew-killed-rank",
    "task=toy-multitask",
    *SMALL_TASK,
    "steps=20",
    "checkpoint_every=5",
    "eval_every=10",
    "nproc=2",
    "wandb.enabled=false",
]


def test_a_killed_process_resumes_the_whole_run_exactly(tmp_path: Path, run_cli) -> None:
    plugins = ["--plugins", "twcore_dp_killer"]
    reference = run_cli(
        *plugins, "run", *KILLED, f"run_dir={tmp_path / 'whole'}", "--quiet", extra_path=FIXTURES
    )
    assert reference.returncode == 0, reference.stderr[-3000:]

    killed_dir = tmp_path / "killed"
    killed = run_cli(
        *plugins,
        "run",
        *KILLED,
        f"run_dir={killed_dir}",
        "--quiet",
        extra_path=FIXTURES,
        env={"TWCORE_TEST_KILL_RANK1_AT": "12"},
    )
    assert killed.returncode != 0
    summary = json.loads((killed_dir / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "another process of this data-parallel run stopped at step 12" in summary["error"]
    assert f"twcore resume {killed_dir}" in killed.stderr
    assert torch.load(killed_dir / "checkpoints/last.pt", weights_only=True)["step"] == 10

    resumed = run_cli(*plugins, "resume", str(killed_dir), "--quiet", extra_path=FIXTURES)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
    summary = json.loads((killed_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2
    assert summary["metrics"] == whole["metrics"]
    one, two = _parameters(tmp_path / "whole"), _parameters(killed_dir)
    assert all(torch.equal(one[name], two[name]) for name in one)
    started, continued = json.loads((killed_dir / "provenance.json").read_text())
    assert (started["step"], continued["step"]) == (0, 10)
    assert continued["command"]["argv"][:4] == ["twcore", "--plugins", "twcore_dp_killer", "resume"]


def test_a_process_failing_on_its_own_stops_the_others_at_once(tmp_path: Path, run_cli) -> None:
    """The failing process tears its group down at once (it does not wait for the others at
    exit), so process 0 learns of it at its next collective, not after the group's timeout
    (here 60 s, against which its error would name a timeout instead)."""
    failed_dir = tmp_path / "failed"
    failed = run_cli(
        "--plugins",
        "twcore_dp_killer",
        "run",
        *KILLED,
        f"run_dir={failed_dir}",
        "--quiet",
        extra_path=FIXTURES,
        env={"TWCORE_TEST_RAISE_RANK1_AT": "7", "TWCORE_DISTRIBUTED_TIMEOUT_S": "60"},
    )
    assert failed.returncode != 0
    summary = json.loads((failed_dir / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "another process of this data-parallel run stopped at step 7" in summary["error"]


def test_process_zero_alone_writes(tmp_path: Path, run_cli) -> None:
    root = tmp_path / "runs"
    done = run_cli(
        "run",
        "method=ew",
        "task=toy-multitask",
        *SMALL_TASK,
        "steps=6",
        "eval_every=3",
        "nproc=2",
        f"runs_root={root}",
        "wandb.mode=offline",
        "--quiet",
        env={"WANDB_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = list(root.iterdir())  # one run directory, not one per process
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len([line for line in lines if '"train/lr"' in line]) == 6  # each step logged once
    assert len(list(tmp_path.rglob("offline-run-*"))) == 1
    assert done.stdout.count("run written to") == 1  # the launching process reports
    # The processes record the command that launched them, not the one they were started with.
    (provenance,) = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["command"]["argv"][:4] == ["twcore", "run", "method=ew", "task=toy-multitask"]
    assert provenance["overrides"][:3] == ["method=ew", "task=toy-multitask", *SMALL_TASK[:1]]
    assert provenance["config_file"] is None


def test_a_batch_smaller_than_the_processes_is_refused(tmp_path: Path, run_cli) -> None:
    done = run_cli(
        "run",
        "method=ew",
        "task=toy-multitask",
        *SMALL_TASK,
        "steps=2",
        "batch_size=1",
        "nproc=2",
        f"runs_root={tmp_path}",
        "wandb.enabled=false",
    )
    assert done.returncode == 2
    assert "batch_size=1 is below nproc=2" in done.stderr


def test_a_sweep_refuses_data_parallel_trials_before_the_first(tmp_path: Path, run_cli) -> None:
    done = run_cli(
        "run",
        "-m",
        "method=ew,gradcos",
        "task=toy-multitask",
        "steps=2",
        "nproc=2",
        f"runs_root={tmp_path}",
        "wandb.enabled=false",
    )
    assert done.returncode == 2
    assert "sweep trials run as one process each" in done.stderr.strip().splitlines()[-1]
    assert not any(tmp_path.iterdir())  # refused before the sweep wrote anything


def test_the_gpu_check_runs_its_checks_on_the_cpu(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    out = tmp_path / "table.md"
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            "--device",
            "cpu",
            "--steps",
            "1",
            "--repeats",
            "1",
            "--methods",
            "ew,two-stage",
            "--tasks",
            "toy-multitask,cubic-topk",
            "--skip-data-parallel",  # its runs are the ones the tests above check
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    table = out.read_text()
    for row in (
        "| ew × toy-multitask | ok",
        "| ew × cubic-topk | ok",
        "| two-stage × cubic-topk | ok",
        "| solver portfolio |",
        "| uw, precision=16-mixed | test losses within",
        "| gradcos, precision=bf16 | test losses within",
        "| gradcos, precision=16-mixed | refused: precision=16-mixed: method 'gradcos'",
    ):
        assert row in table, row
    assert "loss scale 65536 at the end" in table
    assert "two-stage × toy-multitask" not in table  # not a pair two-stage can run


def test_the_gpu_check_says_when_there_is_no_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "gpu_check: CUDA is not available here; run it on a GPU machine, or with --device cpu to "
        "exercise the same checks on the CPU"
    )


def test_a_stop_signal_to_the_launcher_stops_every_process_with_a_checkpoint(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "twcore",
        "run",
        "method=ew",
        "task=toy-multitask",
        "steps=100000",
        "eval_every=0",
        "checkpoint_every=100000",
        "nproc=2",
        f"run_dir={run_dir}",
        "wandb.enabled=false",
        "--quiet",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.stat().st_size > 0):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert f"continue with `twcore resume {run_dir}`" in out
    state = torch.load(run_dir / "checkpoints/last.pt", weights_only=True)
    assert state["step"] == summary["steps"] > 0  # both processes stopped at the same step


def test_a_refused_resume_says_why_and_leaves_the_run_as_it_was(tmp_path: Path, run_cli) -> None:
    run_dir = tmp_path / "run"
    common = ["method=ew", "task=toy-multitask", *SMALL_TASK, "eval_every=0", "wandb.enabled=false"]
    first = run_cli("run", *common, "steps=6", "nproc=2", f"run_dir={run_dir}", "--quiet")
    assert first.returncode == 0, first.stderr[-3000:]
    before = (run_dir / "summary.json").read_text()
    fewer = run_cli("resume", str(run_dir), "steps=3", "--quiet")  # refused by the processes
    assert fewer.returncode != 0
    assert "steps=3 is below the 6 steps" in fewer.stderr
    assert "failed before recording anything" in fewer.stderr.strip().splitlines()[-1]
    other = run_cli("resume", str(run_dir), "steps=8", "nproc=1", "--quiet")
    assert other.returncode == 2
    assert other.stderr.strip().splitlines()[-1] == (
        "twcore: error: the checkpoint was saved by a run of 2 process(es) and this resume has 1; "
        "resume with nproc=2 (sums over processes round differently, so the run would not "
        "continue exactly)"
    )
    assert (run_dir / "summary.json").read_text() == before


def test_what_the_processes_would_refuse_is_refused_before_they_start(tmp_path: Path) -> None:
    from twcore_method_ew.method import EqualWeightingMethod

    from twcore.contract.errors import ConfigError
    from twcore.orchestration.registry import PluginRegistry, use_registry

    common = [
        "task=toy-multitask",
        "steps=2",
        "nproc=2",
        f"runs_root={tmp_path}",
        "wandb.enabled=false",
    ]

    class OneProcessOnly(EqualWeightingMethod):
        data_parallel = False

    with use_registry(PluginRegistry()):
        twcore.register("method", "ew-here-only", EqualWeightingMethod)
        with pytest.raises(ConfigError, match=r"'ew-here-only' was registered by .* data-parallel"):
            twcore.run(["method=ew-here-only", *common])
        twcore.register("method", "one-process-only", OneProcessOnly)
        with pytest.raises(
            ConfigError, match="nproc=2: method 'one-process-only' does not run data-parallel"
        ):
            twcore.run(["method=one-process-only", *common])
    with pytest.raises(ConfigError, match="accumulate=2: method 'gradcos' does not accumulate"):
        twcore.run(["method=gradcos", "accumulate=2", *common])
    with pytest.raises(ConfigError, match="eval_batch_size=1 is below nproc=2"):
        twcore.run(["method=ew", "eval_batch_size=1", *common])
    with pytest.raises(ConfigError, match=r"batch_size ÷ accumulate=1 is below nproc=2"):
        twcore.run(["method=ew", "batch_size=3", "accumulate=3", *common])
    assert not any(tmp_path.iterdir())  # no process started, nothing written


def test_outside_a_data_parallel_run_a_process_takes_every_unit_and_sums_are_its_own() -> None:
    from twcore.autodiff import data_parallel
    from twcore.autodiff.data_parallel import (
        process_local,
        process_share,
        rows_in_shares,
        sum_of_shares,
    )

    assert process_share(5) == range(5)
    asked: list[slice] = []

    def rows_of(rows: slice) -> torch.Tensor:
        asked.append(rows)
        return torch.arange(4)[rows]

    assert rows_in_shares(4, rows_of).tolist() == [0, 1, 2, 3]
    assert asked == [slice(0, 4)]  # once, on every row
    assert data_parallel.sum_over_processes({"a": 1.5}, torch.device("cpu")) == {"a": 1.5}
    totals = sum_of_shares(4, lambda i: {"i": i, "one": 1}, ["i", "one"], torch.device("cpu"))
    assert totals == {"i": 6.0, "one": 4.0}
    with pytest.raises(ZeroDivisionError):  # a unit's failure is the caller's
        sum_of_shares(3, lambda i: {"x": 1 / (i - 1)}, ["x"], torch.device("cpu"))
    with pytest.raises(KeyError), process_local():
        assert data_parallel._inside.local
        raise KeyError("inside")
    assert not data_parallel._inside.local  # restored after the exception
