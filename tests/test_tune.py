"""``twcore tune``: a real Optuna study on SQLite and PostgreSQL, trials on the sweep backends.

The task is scikit-learn's diabetes regression with a linear model trained by full-batch
gradient descent, where the answer is known in closed form: the least-squares fit is the best
validation MSE any learning rate can reach, and gradient descent diverges above 2/λ_max of the
training loss's Hessian.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

import twcore
from twcore.orchestration.backends import SweepOptions
from twcore.orchestration.cli.main import main
from twcore.orchestration.config.compose import compose
from twcore.orchestration.config.overrides import parse_override
from twcore.orchestration.engine.components import build_task
from twcore.orchestration.report import write_report
from twcore.orchestration.tune import TuneOptions, run_tune
from twcore.orchestration.tune.space import parse_space

optuna = pytest.importorskip("optuna", reason="Optuna is the test extra's; pip install -e .[test]")

TASK = [
    "task=diabetes",
    "model=linear",
    "method=ew",
    "optim.name=sgd",
    "optim.momentum=0",
    "batch_size=512",
]
NO_WANDB = "wandb.enabled=false"  # W&B is tested once, in the first study; it costs seconds a run


def closed_form() -> tuple[float, float]:
    """(least-squares validation MSE, 2/λ_max of the training MSE's Hessian) on the task."""
    task = build_task(compose([parse_override(a) for a in TASK]))
    train, val = task.split("train"), task.split("val")

    def design(inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.double()
        return torch.cat([inputs, torch.ones(len(inputs), 1, dtype=inputs.dtype)], dim=1)

    a, a_val = design(train.inputs), design(val.inputs)
    y, y_val = train.targets["target"].double(), val.targets["target"].double()
    weights = torch.linalg.lstsq(a, y.reshape(-1, 1)).solution
    best_mse = float(((a_val @ weights).reshape(-1) - y_val.reshape(-1)).pow(2).mean())
    hessian = 2 * a.T @ a / len(a)
    return best_mse, float(2 / torch.linalg.eigvalsh(hessian).max())


def study_trials(tune_dir: Path, name: str | None = None, storage: str | None = None) -> list:
    """The study's trials, read straight from its database."""
    url = storage or f"sqlite:///{tune_dir / 'study.db'}"
    study = optuna.load_study(study_name=name or tune_dir.name, storage=url)
    return study.get_trials(deepcopy=False)


def counted(trials: list) -> list:
    return [t for t in trials if "twcore:void" not in t.user_attrs]


# ---- the search space ---------------------------------------------------------------------------


def test_the_space_parses_every_form_and_keeps_fixed_overrides() -> None:
    space = parse_space(
        [
            "optim.lr=loguniform(1e-4,1e-1)",
            "method.eta=choice(0.01,0.1)",
            "steps=int(10,50,20)",
            "model.hidden=[64]",
            "seed=3",
        ]
    )
    described = space.describe()
    assert described == {
        "optim.lr": "loguniform(0.0001,0.1)",
        "method.eta": "choice(0.01,0.1)",
        "steps": "int(10,50,20)",
    }
    assert [str(o) for o in space.fixed] == ["model.hidden=[64]", "seed=3"]
    by_key = {p.key: p for p in space.parameters}
    assert by_key["steps"].discrete_values == ("10", "30", "50")
    assert by_key["optim.lr"].log and by_key["optim.lr"].discrete_values is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["optim.lr=normal(0,1)"], "unknown distribution 'normal'"),
        (["optim.lr=loguniform(0,1)"], "a log scale needs LOW > 0"),
        (["optim.lr=uniform(1,1)"], "LOW must be below HIGH"),
        (["steps=int(1,10,4)"], "STEP must be at least 1 and divide HIGH - LOW"),
        (["method.eta=0.1,0.2"], "write method.eta=choice(0.1,0.2)"),
        (["steps=100"], "nothing to search"),
        (["optim.lr=uniform(0,1)", "optim.lr=uniform(0,2)"], "searched twice"),
    ],
)
def test_a_bad_space_is_a_one_line_error_before_anything_is_written(
    tmp_path, capsys, arguments, message
) -> None:
    assert main(["tune", *arguments, f"run_dir={tmp_path / 'tune'}", "-q"]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "tune").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sampler", "grid"], "is continuous"),
        (["--objective", "max:accuracy"], "reports no metric 'accuracy'"),
        (["--sampler", "bayes"], "--sampler bayes: choose one of tpe, random, grid"),
        (["--seeds", "0,a"], "--seeds 0,a: give integers"),
        (["--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot open the study database"),
    ],
)
def test_bad_tune_options_are_one_line_errors(tmp_path, capsys, flags, message) -> None:
    arguments = [*TASK, "optim.lr=loguniform(1e-3,1)", f"run_dir={tmp_path / 'tune'}", *flags]
    assert main(["tune", *arguments]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1


# ---- a study ------------------------------------------------------------------------------------


def test_a_study_on_ray_finds_the_known_optimum_and_prunes(tmp_path, monkeypatch) -> None:
    """8 trials as tasks on a local Ray cluster of 2 workers (the local backend is the killed
    tune's below, the serial one the shared studies'), each run reporting to the study from its
    own process: the best learning rate is below the divergence bound
    2/λ_max, its validation MSE within 3% of least squares, and the median pruner cut a trial.
    The best configuration file re-runs to the very same validation MSE."""
    pytest.importorskip("ray", reason="Ray is the test extra's")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    best_mse, divergence_lr = closed_form()
    tune_dir = tmp_path / "tune"
    result = run_tune(
        [
            *TASK,
            "wandb.mode=offline",
            "optim.lr=loguniform(1e-3,1)",
            "steps=60",
            "eval_every=10",
            f"run_dir={tune_dir}",
        ],
        options=TuneOptions(
            trials=8, objective="min:mse", backend=SweepOptions(backend="ray", workers=2)
        ),
    )
    states = [t.state for t in result.trials]
    assert len(states) == 8 and "running" not in states and "waiting" not in states
    assert states.count("pruned") >= 1, states
    assert result.best is not None
    best_lr = result.best.params["optim.lr"]
    assert best_lr < divergence_lr
    assert result.best.value <= 1.03 * best_mse, (result.best.value, best_mse)
    # Diverged learning rates fail their trial (above the closed-form bound only).
    for trial in result.trials:
        if trial.state == "fail":
            assert trial.params["optim.lr"] > 0.5 * divergence_lr, trial

    for name in ("study.md", "trials.json", "history.png", "intermediate.png", "slice.png"):
        assert (tune_dir / name).exists(), name
    assert (tune_dir / "importance.png").exists()
    report = (tune_dir / "study.md").read_text()
    assert f"**Best: trial {result.best.number}**" in report and "pruned" in report
    assert result.rerun_command == f"python3 -m twcore run --config {result.best_config}"
    assert glob.glob(str(tune_dir / "wandb" / "offline-run-*"))  # the W&B summary run

    rerun = twcore.run(
        ["wandb.enabled=false", f"run_dir={tmp_path / 'rerun'}"], config_file=result.best_config
    )
    # The trial ran in a worker with one torch thread, this run with the machine's: float32
    # sums in another order, so equal to rounding, not to the bit.
    assert rerun.summary["metrics"]["val"]["mse"] == pytest.approx(result.best.value, rel=1e-6)


def test_seeds_are_aggregated_as_mean_or_worst_before_the_study_sees_them(tmp_path) -> None:
    values = {}
    for aggregate in ("mean", "worst"):
        result = run_tune(
            [
                *TASK,
                NO_WANDB,
                "optim.lr=choice(0.05)",
                "steps=20",
                "eval_every=0",
                f"run_dir={tmp_path / aggregate}",
            ],
            options=TuneOptions(
                trials=1,
                seeds=[0, 1, 2],
                objective="min:mse",
                aggregate=aggregate,
                sampler="grid",
                pruner="none",
            ),
        )
        (trial,) = result.trials
        per_seed = [
            json.loads(
                (tmp_path / aggregate / trial.runs / f"seed-{s}" / "summary.json").read_text()
            )["metrics"]["val"]["mse"]
            for s in (0, 1, 2)
        ]
        assert len(set(per_seed)) == 3  # the seeds differ (initialisation)
        assert trial.seed_values == dict(zip((0, 1, 2), per_seed, strict=True))
        values[aggregate] = (trial.value, per_seed)
    assert values["mean"][0] == pytest.approx(sum(values["mean"][1]) / 3, rel=1e-12)
    assert values["worst"][0] == max(values["worst"][1])  # MSE: the worst is the largest


def test_a_grid_study_visits_every_point_once(tmp_path) -> None:
    result = run_tune(
        [
            *TASK,
            NO_WANDB,
            "optim.lr=choice(0.01,0.1)",
            "steps=int(10,30,20)",
            "eval_every=0",
            f"run_dir={tmp_path / 'grid'}",
        ],
        options=TuneOptions(sampler="grid", pruner="none", objective="min:mse"),
    )
    points = sorted((t.params["optim.lr"], t.params["steps"]) for t in result.trials)
    assert points == [("0.01", 10), ("0.01", 30), ("0.1", 10), ("0.1", 30)]


# ---- resuming, sharing --------------------------------------------------------------------------


def _tune_command(tune_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "twcore",
        "tune",
        *TASK,
        NO_WANDB,
        "optim.lr=loguniform(1e-3,0.2)",
        "eval_every=20",
        f"run_dir={tune_dir}",
        "--objective",
        "min:mse",
        "-q",
        *extra,
    ]


def _start(command: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


def _finished_trials(tune_dir: Path) -> list:
    try:
        return [t for t in study_trials(tune_dir) if t.state.is_finished() and counted([t])]
    except Exception:  # the study is not created yet
        return []


def _checkpointed_running_run(tune_dir: Path) -> bool:
    """Whether a run still training has written a checkpoint."""
    for summary in tune_dir.glob("trial-*/seed-0/summary.json"):
        try:
            running = json.loads(summary.read_text())["status"] == "running"
        except (OSError, ValueError, KeyError):
            continue
        if running and any((summary.parent / "checkpoints").glob("*")):
            return True
    return False


def test_a_killed_tune_resumes_its_study_without_repeating_finished_trials(tmp_path) -> None:
    """SIGKILL the `twcore tune` process (a local worker) once a trial finished and the next
    one checkpointed; the same command finishes the study: the finished trial keeps its value
    and its run is not run again, the interrupted one resumes from its checkpoint in its own
    run directory (its orphaned worker having stopped)."""
    tune_dir = tmp_path / "tune"
    command = _tune_command(
        tune_dir,
        "steps=800",
        "checkpoint_every=50",
        "--trials",
        "3",
        "--backend",
        "local",
        "--workers",
        "1",
        "--pruner",
        "none",
    )
    process = _start(command, tmp_path / "first.log")
    deadline = time.monotonic() + 240
    while not (_finished_trials(tune_dir) and _checkpointed_running_run(tune_dir)):
        assert process.poll() is None, (tmp_path / "first.log").read_text()
        assert time.monotonic() < deadline, "no trial finished and checkpointed in time"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = {t.number: (t.value, t.user_attrs["twcore:runs"]) for t in _finished_trials(tune_dir)}
    stamps = {
        number: (tune_dir / runs / "seed-0" / "summary.json").stat().st_mtime_ns
        for number, (_, runs) in before.items()
    }
    (interrupted,) = [t for t in study_trials(tune_dir) if t.state.name == "RUNNING"]

    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"requeued trial(s) {interrupted.number}" in second.stderr

    trials = study_trials(tune_dir)
    live = counted(trials)
    assert len(live) == 3 and all(t.state.name == "COMPLETE" for t in live)
    for number, (value, runs) in before.items():
        assert trials[number].value == value
        stamp = (tune_dir / runs / "seed-0" / "summary.json").stat().st_mtime_ns
        assert stamp == stamps[number], f"trial {number}'s run was run again"
    runs = interrupted.user_attrs["twcore:runs"]
    assert "twcore:void" in trials[interrupted.number].user_attrs
    (copy,) = [t for t in live if t.user_attrs["twcore:runs"] == runs]
    assert copy.params == interrupted.params
    log = (tune_dir / ".logs" / runs / "seed-0.log").read_text()
    assert " resume " in log  # the copy continued the checkpointed run
    summary = json.loads((tune_dir / runs / "seed-0" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 800
    assert summary["metrics"]["val"]["mse"] == copy.value


def _share_a_study(tmp_path: Path, storage: list[str]) -> tuple[Path, list]:
    tune_dir = tmp_path / "shared"
    command = _tune_command(tune_dir, "steps=60", "--trials", "6", *storage)
    processes = [_start(command, tmp_path / f"process-{i}.log") for i in range(2)]
    for i, process in enumerate(processes):
        assert process.wait(timeout=300) == 0, (tmp_path / f"process-{i}.log").read_text()
    return tune_dir, processes


def _assert_shared_without_duplicates_or_losses(tune_dir: Path, trials: list) -> None:
    live = counted(trials)
    assert len(live) == 6, [(t.number, t.state, t.user_attrs) for t in trials]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in live)
    runs = [t.user_attrs["twcore:runs"] for t in live]
    assert len(set(runs)) == 6  # no trial ran twice, none shares another's runs
    owners = {t.user_attrs["twcore:owner"]["token"] for t in live}
    assert len(owners) == 2, "both processes ran trials"
    for trial in live:
        if trial.state.name == "COMPLETE":
            summary = json.loads(
                (tune_dir / trial.user_attrs["twcore:runs"] / "seed-0" / "summary.json").read_text()
            )
            assert summary["metrics"]["val"]["mse"] == trial.value


def test_two_tune_processes_share_one_sqlite_study(tmp_path) -> None:
    tune_dir, _ = _share_a_study(tmp_path, [])
    trials = study_trials(tune_dir)
    _assert_shared_without_duplicates_or_losses(tune_dir, trials)
    # Each process prints the best trial when it ended, and where its configuration is; the
    # one that ended last saw the whole study.
    complete = {t.number: t.value for t in trials if t.state.name == "COMPLETE"}
    best = min(complete, key=complete.__getitem__)
    rerun = f"re-run it: python3 -m twcore run --config {tune_dir / 'best' / 'config.yaml'}"
    printed_best = []
    for log in ("process-0.log", "process-1.log"):
        printed = (tmp_path / log).read_text()
        assert rerun in printed
        number = int(printed.split("best: trial ", 1)[1].split(",", 1)[0])
        assert f"best: trial {number}, min:mse = {complete[number]:.6g}" in printed
        printed_best.append(number)
    assert best in printed_best


# ---- PostgreSQL ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server from Debian's package, started for these tests and stopped after."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    pytest.importorskip("psycopg2", reason="psycopg2 is the test extra's")
    bin_dir = Path(found[-1]).parent
    # Not under pytest's root-only temporary folder: the server's user must reach it.
    root = Path(tempfile.mkdtemp(prefix="twcore-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser to start PostgreSQL as another user")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()
    run = lambda *command: subprocess.run(  # noqa: E731
        [*as_user, *command], check=True, capture_output=True, text=True, timeout=120
    )
    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-w",
        "-l",
        str(root / "server.log"),
        "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
        "start",
    )
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "tune")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/tune"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_two_tune_processes_share_one_postgresql_study(tmp_path, postgres_url) -> None:
    tune_dir, _ = _share_a_study(tmp_path, ["--storage", postgres_url, "--study", "shared"])
    assert not (tune_dir / "study.db").exists()
    trials = study_trials(tune_dir, "shared", postgres_url)
    _assert_shared_without_duplicates_or_losses(tune_dir, trials)


def test_report_over_a_tune_directory_has_one_row_per_configuration(tmp_path) -> None:
    tune_dir = tmp_path / "tune"
    result = run_tune(
        [
            *TASK,
            NO_WANDB,
            "optim.lr=choice(0.01,0.1)",
            "steps=20",
            "eval_every=0",
            f"run_dir={tune_dir}",
        ],
        options=TuneOptions(sampler="grid", pruner="none", seeds=[0, 1], objective="min:mse"),
    )
    study_report = (tune_dir / "study.md").read_text()
    report = write_report([tune_dir], wandb=False)
    assert (tune_dir / "study.md").read_text() == study_report  # not overwritten
    (table,) = report.tables
    assert table.row_keys == ["optim.lr"]
    by_lr = {row[0]: sorted(cells["mse"].values) for row, cells in table.rows.items()}
    for trial in result.trials:
        test_mse = [
            json.loads((tune_dir / trial.runs / f"seed-{s}" / "summary.json").read_text())[
                "metrics"
            ]["test"]["mse"]
            for s in (0, 1)
        ]
        assert by_lr[str(trial.params["optim.lr"])] == sorted(test_mse)


def test_successive_halving_prunes(tmp_path) -> None:
    result = run_tune(
        [
            *TASK,
            NO_WANDB,
            "optim.lr=loguniform(1e-4,0.2)",
            "steps=50",
            "eval_every=10",
            f"run_dir={tmp_path / 'halving'}",
        ],
        options=TuneOptions(
            trials=6, objective="min:mse", sampler="random", pruner="halving", prune_after=10
        ),
    )
    states = [t.state for t in result.trials]
    assert len(states) == 6 and "pruned" in states and "complete" in states


def test_a_callback_spec_runs_only_marked_factories_inside_twcore(monkeypatch) -> None:
    """The spec travels in a worker's environment and names code: a module outside twcore is
    not even imported, and a twcore function not marked as a factory is not called."""
    from twcore.contract.errors import UsageError
    from twcore.orchestration.backends.trial_callbacks import (
        CALLBACKS_ENV,
        WORKER_ENV,
        StopWhenOrphaned,
        callback_spec,
        callbacks_for,
        worker_callbacks,
    )

    with pytest.raises(UsageError, match="outside twcore"):
        callbacks_for(callback_spec("os:system", {"command": "true"}))
    with pytest.raises(UsageError, match="is not a callback factory"):
        callbacks_for(callback_spec("twcore.orchestration.tune.space:parse_space", {}))
    with pytest.raises(UsageError, match="not a callback spec"):
        callbacks_for("{not json")
    monkeypatch.delenv(WORKER_ENV, raising=False)
    assert worker_callbacks() == []  # not a worker: nothing added
    monkeypatch.setenv(WORKER_ENV, "1")
    monkeypatch.setenv("TWCORE_TRIAL_PARENT", str(os.getppid()))
    monkeypatch.delenv(CALLBACKS_ENV, raising=False)
    (watch,) = worker_callbacks()
    assert isinstance(watch, StopWhenOrphaned) and not watch.should_stop(1)
    assert StopWhenOrphaned(os.getppid() + 1).should_stop(1)  # another parent: orphaned
