"""``twcore tune``: an Optuna study whose trials are twcore runs on a sweep backend.

Each trial is one configuration: the sampler picks a value for every searched key, and the
configuration runs once per seed, each seed its own run directory
(``TUNE_DIR/trial-0007/seed-1``) and W&B run. The study sees the seeds' final validation values
aggregated (mean, or the worst), and the lead seed's intermediate validation values for pruning
(:mod:`~twcore.orchestration.tune.reporter`). Trials are asked for one at a time as backend
workers free up, so each is chosen knowing every result before it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twcore.contract.atomic_files import atomic_write_text
from twcore.contract.errors import ConfigError, UsageError
from twcore.orchestration.backends import SweepOptions, TrialJob, TrialOutcome, get_backend
from twcore.orchestration.backends.trial import completed_summary, read_summary
from twcore.orchestration.backends.trial_callbacks import callback_spec
from twcore.orchestration.config.compose import ComposedConfig, compose
from twcore.orchestration.config.overrides import Override
from twcore.orchestration.console import info, warn
from twcore.orchestration.engine.best import metric_goal
from twcore.orchestration.engine.components import build_task
from twcore.orchestration.engine.summary import finished
from twcore.orchestration.registry import PluginRegistry
from twcore.orchestration.report.collect import TUNE_FILE
from twcore.orchestration.sweep import TRIAL_CONFIGS, TRIAL_LOGS, TRIAL_PIDS, place_trial
from twcore.orchestration.tune import study as studies
from twcore.orchestration.tune.outputs import write_outputs
from twcore.orchestration.tune.records import TuneResult, TuneSetup
from twcore.orchestration.tune.reporter import FACTORY
from twcore.orchestration.tune.space import SearchSpace, parse_space
from twcore.orchestration.tune.study_lock import study_lock

AGGREGATES = ("mean", "worst")
UNFINISHED = ("interrupted", "pending")
"""Outcomes of a seed stopped by a Ctrl-C (or never started): the trial is requeued, not told."""
DEFAULT_TRIALS = 20


@dataclass
class TuneOptions:
    """How a study searches and where its trials run.

    Attributes:
        trials: the study's budget of trials (all processes together); default: the grid's
            size for ``grid``, else 20.
        seeds: seeds each configuration runs with (default: the configuration's ``seed``).
        sampler: ``tpe`` (default), ``random`` or ``grid`` (every value of discrete keys).
        pruner: ``median`` (default), ``halving`` (successive halving) or ``none``.
        objective: a validation metric: ``NAME`` (in the direction the task declares for
            it), ``max:NAME`` or ``min:NAME`` (default: the task's primary metric).
        aggregate: how the seeds' values become the study's: ``mean`` or ``worst``.
        storage: the study database URL (default: SQLite in the tune directory).
        study: the study's name (default: the tune directory's name).
        sampler_seed: the seed of the sampler (each further process joining the study adds 1).
        startup_trials: trials sampled at random before TPE models the results, and that the
            median pruner waits for (default: a quarter of the budget, 2 to 10).
        prune_after: no trial is pruned before this step (median: its warm-up; successive
            halving: its minimum resource), so slow starters are not cut at the first
            evaluation; 0: from the first evaluation (halving: estimated by Optuna).
        grace_s: a running trial whose owner sent no heartbeat for this long is requeued.
        space_file: a YAML file of ``key: expression`` searched along with the command line.
        backend: where trials run (:class:`~twcore.orchestration.backends.SweepOptions`).
    """

    trials: int | None = None
    seeds: Sequence[int] | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    objective: str | None = None
    aggregate: str = "mean"
    storage: str | None = None
    study: str | None = None
    sampler_seed: int = 0
    startup_trials: int | None = None
    prune_after: int = 0
    grace_s: float = 120.0
    space_file: str | Path | None = None
    backend: SweepOptions = field(default_factory=SweepOptions)

    def __post_init__(self) -> None:
        for name, value, valid in (
            ("--sampler", self.sampler, studies.SAMPLERS),
            ("--pruner", self.pruner, studies.PRUNERS),
            ("--aggregate", self.aggregate, AGGREGATES),
        ):
            if value not in valid:
                raise ConfigError(f"{name} {value}: choose one of {', '.join(valid)}")
        if self.prune_after < 0:
            raise ConfigError(f"--prune-after {self.prune_after}: must be 0 or more")
        if self.trials is not None and self.trials < 1:
            raise ConfigError(f"--trials {self.trials}: must be at least 1")
        if self.seeds is not None and not self.seeds:
            raise ConfigError("--seeds: give at least one seed")
        if self.objective is not None:
            mode, sep, name = self.objective.rpartition(":")
            if (sep and mode not in ("max", "min")) or not name:
                raise ConfigError(
                    f"--objective {self.objective}: write METRIC, max:METRIC or min:METRIC"
                )


@dataclass
class _Pending:
    """A trial this process has asked for and whose seeds are running."""

    trial: Any
    runs: str
    jobs: list[TrialJob]
    outcomes: dict[int, TrialOutcome] = field(default_factory=dict)


class Tuner:
    """One ``twcore tune`` process working on a study (see the module docstring)."""

    def __init__(
        self,
        arguments: Sequence[str],
        *,
        config_file: str | Path | None = None,
        registry: PluginRegistry | None = None,
        options: TuneOptions | None = None,
    ) -> None:
        self.options = options or TuneOptions()
        self.config_file, self.registry = config_file, registry
        self.space: SearchSpace = parse_space(arguments, self.options.space_file)
        self.base = self._check_space()
        self.objective = self._objective()
        self.seeds = self._seeds()
        self.grid = self._grid()
        self.budget = self._budget()
        self.tune_dir = _tune_dir(self.base)
        self.pruner = studies.PrunerSpec(
            kind=self.options.pruner,
            startup_trials=self._startup_trials(),
            warmup_steps=self.options.prune_after,
        )
        self.storage_url = studies.storage_url(self.tune_dir, self.options.storage)
        self.study_name = self.options.study or self.tune_dir.name
        self.pending: dict[int, _Pending] = {}

    # ---- checks before anything runs --------------------------------------------------------

    def _compose(self, values: dict[str, str], seed: int | None = None) -> ComposedConfig:
        overrides = self.space.overrides(values)
        if seed is not None:
            overrides.append(Override("seed", str(seed)))
        return compose(overrides, config_file=self.config_file, registry=self.registry)

    def _check_space(self) -> ComposedConfig:
        """Compose every choice and both bounds of every range (the other keys at their first
        value), so a bad key, value or bound fails before the study starts."""
        first = {p.key: p.corners()[0] for p in self.space.parameters}
        base: ComposedConfig | None = None
        for parameter in self.space.parameters:
            for value in parameter.corners():
                values = {**first, parameter.key: value}
                try:
                    composed = self._compose(values)
                except UsageError as exc:
                    raise type(exc)(f"{exc} (searching {parameter.key}={value})") from exc
                if composed.run.nproc > 1:
                    raise ConfigError(
                        f"nproc={composed.run.nproc}: tune trials run as one process each; "
                        "tune a data-parallel configuration at nproc=1"
                    )
                base = base or composed
        assert base is not None
        return base

    def _objective(self) -> str:
        task = build_task(self.base)
        name = self.base.plugins["task"].name
        metric, mode = metric_goal(
            self.options.objective or "", task, option="--objective", task_name=f"task '{name}'"
        )
        return f"{mode}:{metric}"

    def _seeds(self) -> list[int]:
        if self.options.seeds is None:
            return [int(self.base.run.seed)]
        if any(o.key == "seed" for o in self.space.fixed):
            raise ConfigError("seed= and --seeds both given; give the seeds with --seeds only")
        if any(p.key == "seed" for p in self.space.parameters):
            raise ConfigError("seed is searched and given with --seeds; give one of them")
        return list(dict.fromkeys(int(s) for s in self.options.seeds))

    def _grid(self) -> dict[str, list[Any]] | None:
        if self.options.sampler != "grid":
            return None
        grid: dict[str, list[Any]] = {}
        for parameter in self.space.parameters:
            values = parameter.discrete_values
            if values is None:
                raise ConfigError(
                    f"--sampler grid: {parameter.key}={parameter.describe()} is continuous; "
                    "search it with choice(...) or int(...), or use --sampler tpe/random"
                )
            grid[parameter.key] = [v if parameter.kind == "choice" else int(v) for v in values]
        return grid

    def _budget(self) -> int:
        if self.grid is None:
            return self.options.trials or DEFAULT_TRIALS
        size = _grid_size(self.grid)
        if self.options.trials is not None and self.options.trials > size:
            info(f"--trials {self.options.trials}: the grid has {size} points; {size} trials")
        return min(self.options.trials or size, size)

    def _startup_trials(self) -> int:
        if self.options.startup_trials is not None:
            return self.options.startup_trials
        return max(2, min(10, self.budget // 4))

    # ---- the study ---------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """What a study is: a process joining it must agree on every entry (the budget, and
        with it the default number of startup trials, may change: a larger one extends it)."""
        pruner = {k: v for k, v in self.pruner.to_dict().items() if k != "startup_trials"}
        return {
            "space": self.space.describe(),
            "fixed": [str(o) for o in self.space.fixed],
            "objective": self.objective,
            "seeds": self.seeds,
            "aggregate": self.options.aggregate,
            "sampler": self.options.sampler,
            "pruner": pruner,
        }

    def _open_study(self, storage: Any) -> Any:
        optuna = studies.optuna_module()
        direction = "maximize" if self.objective.startswith("max:") else "minimize"
        try:
            study = optuna.create_study(
                study_name=self.study_name,
                storage=storage,
                direction=direction,
                load_if_exists=True,
            )
        except ValueError as exc:
            raise ConfigError(f"study {self.study_name}: {exc}") from exc
        recorded = study.user_attrs.get(studies.SETTINGS)
        if recorded is None:
            self._refuse_earlier_runs()
            study.set_user_attr(studies.SETTINGS, self.settings())
            if self.grid is not None:  # every point once, in an order shuffled by the seed
                studies.enqueue_grid(study, self.grid, seed=self.options.sampler_seed)
        elif recorded != self.settings():
            differing = sorted(k for k in recorded if recorded[k] != self.settings().get(k))
            raise ConfigError(
                f"study {self.study_name} in {studies.masked(self.storage_url)} was created with "
                f"other settings ({', '.join(differing)}: "
                + "; ".join(f"{k}={recorded[k]}" for k in differing)
                + "); give the same ones, or another --study"
            )
        joins = int(study.user_attrs.get(studies.JOINS, 0))
        study.set_user_attr(studies.JOINS, joins + 1)
        study.sampler = studies.build_sampler(
            self.options.sampler,
            seed=self.options.sampler_seed + joins,
            startup_trials=self.pruner.startup_trials,
        )
        study.pruner = self.pruner.build()
        return study

    def _refuse_earlier_runs(self) -> None:
        """ConfigError if a new study would reuse the run directories of an earlier one (trial
        numbers start again at 0, and trial-0000 would resume another study's run)."""
        earlier = sorted(p.name for p in self.tune_dir.glob("trial-*") if p.is_dir())
        if earlier:
            raise ConfigError(
                f"run_dir={self.tune_dir} holds the runs of another study ({', '.join(earlier[:3])}"
                f"{', ...' if len(earlier) > 3 else ''}) and study {self.study_name} is new in "
                f"{studies.masked(self.storage_url)}; choose another run_dir"
            )

    def run(self) -> TuneResult:
        """Work on the study until its budget of trials is used, then write the outputs."""
        storage = studies.open_storage(self.storage_url)
        self.storage = storage
        with self._locked():
            study = self._open_study(storage)
        self.study = study
        backend = get_backend(self.options.backend)
        backend.check_plugins(self._check_jobs())
        if self.options.backend.ray_address and self.storage_url.startswith("sqlite"):
            warn(
                "--ray-address with the study in SQLite: every node's trials write to "
                f"{self.storage_url}; give --storage (PostgreSQL) unless all run on this machine"
            )
        atomic_write_text(self.tune_dir / TUNE_FILE, _tune_file(self))
        info(
            f"tune: study {self.study_name} ({studies.masked(self.storage_url)}), "
            f"{self.budget} trial(s) of {len(self.seeds)} seed(s) in {self.tune_dir} on the "
            f"{self.options.backend.backend} backend"
        )
        self.owner = studies.Owner(storage)
        try:
            backend.run(self._jobs(), self._record)
        except BaseException:
            warn("tune stopped; the same command continues the study")
            self._requeue_unfinished("its tune process stopped; requeued")
            raise
        finally:
            self.owner.close()
        self._requeue_unfinished("its runs ended without a verdict; requeued")
        return write_outputs(self.setup())

    def setup(self) -> TuneSetup:
        """What the outputs are written from."""
        return TuneSetup(
            study=self.study,
            tune_dir=self.tune_dir,
            study_name=self.study_name,
            storage=studies.masked(self.storage_url),
            objective=self.objective,
            seeds=self.seeds,
            aggregate=self.options.aggregate,
            sampler=self.options.sampler,
            pruner=self.pruner.kind,
            space=self.space.describe(),
            settings=self.settings(),
            wandb=self.base.run.wandb,
            compose=self._compose,
        )

    def _locked(self) -> Any:
        return study_lock(self.storage_url, self.storage, self.study_name)

    def _check_jobs(self) -> list[TrialJob]:
        """Composed configurations of the space's choices for the backend's plugin check."""
        first = {p.key: p.corners()[0] for p in self.space.parameters}
        jobs = []
        for parameter in self.space.parameters:
            if parameter.kind != "choice":
                continue
            for value in parameter.choices:
                composed = self._compose({**first, parameter.key: value})
                jobs.append(_check_job(composed, self.tune_dir))
        return jobs or [_check_job(self.base, self.tune_dir)]

    # ---- trials ------------------------------------------------------------------------------

    def _jobs(self) -> Iterator[TrialJob]:
        """Each trial's jobs, a trial asked for only when a worker is free for it."""
        while True:
            pending = self._next_trial()
            if pending is None:
                return
            for job in pending.jobs:
                if pending.trial.number not in self.pending:
                    break  # already told (it failed to compose, or was pruned)
                summary = completed_summary(job.run_dir)
                if summary is not None or self._pruned(pending):
                    status = str(summary["status"]) if summary else "stopped"
                    self._record(job, TrialOutcome(status=status, summary=summary))
                    continue
                yield job

    def _ask(self) -> tuple[Any, str] | None:
        """The next trial, claimed for this process, and the name of its runs' directory (None
        once the budget is used): under the study's lock, after requeuing the trials of
        processes that died."""
        optuna = studies.optuna_module()
        with self._locked():
            adopted = studies.adopt_orphans(
                self.study,
                self.storage,
                grace_s=self.options.grace_s,
                parameters=len(self.space.parameters),
            )
            if adopted:
                info(f"requeued trial(s) {', '.join(map(str, adopted))}: their process died")
            while studies.budget_left(self.study, self.budget):
                trial = self.study.ask()
                if studies.within_budget(self.study, trial.number, self.budget):
                    runs = studies.runs_of(trial)
                    self.storage.set_trial_user_attr(trial._trial_id, studies.RUNS, runs)
                    self.owner.claim(trial._trial_id)
                    return trial, runs
                # A grid point enqueued twice, or a budget another process used meanwhile.
                self.storage.set_trial_user_attr(trial._trial_id, studies.VOID, "over the budget")
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return None

    def _next_trial(self) -> _Pending | None:
        while True:
            asked = self._ask()
            if asked is None:
                return None
            trial, runs = asked
            values = {p.key: self._suggest(trial, p) for p in self.space.parameters}
            try:
                jobs = [self._job(trial, runs, values, seed) for seed in self.seeds]
            except UsageError as exc:
                self._tell_failed(trial, str(exc))
                continue
            pending = _Pending(trial, runs, jobs)
            self.pending[trial.number] = pending
            described = ", ".join(f"{k}={v}" for k, v in values.items())
            info(f"trial {trial.number}: {described}")
            return pending

    def _suggest(self, trial: Any, parameter: Any) -> str:
        if parameter.kind == "choice":
            return str(trial.suggest_categorical(parameter.key, list(parameter.choices)))
        if parameter.kind in ("int", "logint"):
            value = trial.suggest_int(
                parameter.key,
                int(parameter.low),
                int(parameter.high),
                step=parameter.step,
                log=parameter.log,
            )
            return str(value)
        return repr(
            float(
                trial.suggest_float(parameter.key, parameter.low, parameter.high, log=parameter.log)
            )
        )

    def _job(self, trial: Any, runs: str, values: dict[str, str], seed: int) -> TrialJob:
        composed = self._compose(values, seed)
        name = f"{runs}/seed-{seed}"
        run_dir = self.tune_dir / runs / f"seed-{seed}"
        group = composed.run.wandb.group or self.tune_dir.name
        config_path = self.tune_dir / TRIAL_CONFIGS / runs / f"seed-{seed}.yaml"
        place_trial(composed, run_dir, group, config_path, [f"trial:{trial.number}"])
        spec = callback_spec(
            FACTORY,
            {
                "storage": self.storage_url,
                "study": self.study_name,
                "trial_id": trial._trial_id,
                "metric": self.objective.split(":", 1)[1],
                "pruner": self.pruner.to_dict(),
                "lead": seed == self.seeds[0],
                "steps": composed.run.steps,
            },
        )
        return TrialJob(
            name=name,
            run_dir=run_dir,
            config_path=config_path,
            log_path=self.tune_dir / TRIAL_LOGS / runs / f"seed-{seed}.log",
            pid_path=self.tune_dir / TRIAL_PIDS / runs / f"seed-{seed}.pid",
            description=f"trial {trial.number} seed {seed}",
            composed=composed,
            callback_spec=spec,
        )

    def _pruned(self, pending: _Pending) -> bool:
        trial = self.storage.get_trial(pending.trial._trial_id)
        return studies.PRUNED_AT in trial.user_attrs

    def _record(self, job: TrialJob, outcome: TrialOutcome) -> None:
        """A seed's outcome; the trial is told to the study once all its seeds are in."""
        runs, _, seed_text = job.name.partition("/seed-")
        pending = next((p for p in self.pending.values() if p.runs == runs), None)
        if pending is None:
            return
        pending.outcomes[int(seed_text)] = outcome
        if outcome.status not in ("completed", "early_stopped", "stopped", *UNFINISHED):
            warn(f"{job.description}: {outcome.status}: {outcome.error}")
        unfinished = any(o.status in UNFINISHED for o in pending.outcomes.values())
        if len(pending.outcomes) == len(self.seeds) and not unfinished:
            self._tell(pending)

    def _tell(self, pending: _Pending) -> None:
        optuna = studies.optuna_module()
        trial = pending.trial
        del self.pending[trial.number]
        self.owner.release(trial._trial_id)
        try:
            self._tell_study(pending)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another process requeued it (its heartbeat looked stale): the copy counts.
            warn(f"trial {trial.number} was requeued by another process; its copy counts")

    def _tell_study(self, pending: _Pending) -> None:
        optuna = studies.optuna_module()
        trial = pending.trial
        metric = self.objective.split(":", 1)[1]
        seed_values: dict[str, float | None] = {}
        for seed, outcome in sorted(pending.outcomes.items()):
            summary = outcome.summary or read_summary(self.tune_dir / pending.runs / f"seed-{seed}")
            value = ((summary or {}).get("metrics", {}).get("val", {}) or {}).get(metric)
            seed_values[str(seed)] = value if finished(outcome.status) else None
        self.storage.set_trial_user_attr(trial._trial_id, studies.SEED_VALUES, seed_values)
        lead = pending.outcomes[self.seeds[0]]
        if self._pruned(pending) and not finished(lead.status):
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
            info(f"trial {trial.number}: pruned")
            return
        failed = [s for s, o in pending.outcomes.items() if not finished(o.status)]
        if failed:
            errors = "; ".join(
                f"seed {s}: {pending.outcomes[s].status}: {pending.outcomes[s].error}"
                for s in failed
            )
            self._tell_failed(trial, errors)
            return
        values = [v for v in seed_values.values() if v is not None and math.isfinite(v)]
        if len(values) < len(seed_values):
            self._tell_failed(trial, f"no finite val/{metric} from every seed: {seed_values}")
            return
        value = self._aggregate(values)
        self.study.tell(trial, value, skip_if_finished=True)
        info(f"trial {trial.number}: val/{metric} = {value:.6g}")

    def _aggregate(self, values: list[float]) -> float:
        if self.options.aggregate == "mean":
            return sum(values) / len(values)
        return min(values) if self.objective.startswith("max:") else max(values)

    def _tell_failed(self, trial: Any, error: str) -> None:
        optuna = studies.optuna_module()
        self.pending.pop(trial.number, None)
        self.owner.release(trial._trial_id)
        warn(f"trial {trial.number} failed: {error}")
        try:
            self.storage.set_trial_user_attr(trial._trial_id, studies.ERROR, error[:2000])
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # requeued by another process meanwhile: its copy counts

    def _requeue_unfinished(self, reason: str) -> None:
        """Requeue the trials this process asked for and did not tell (a Ctrl-C, a crash, a
        worker stopped from outside), so that this or another process finishes them."""
        if not self.pending:
            return
        with self._locked():
            for pending in list(self.pending.values()):
                frozen = self.storage.get_trial(pending.trial._trial_id)
                studies.requeue(self.study, self.storage, frozen, reason, complete=True)
                self.owner.release(pending.trial._trial_id)
        self.pending.clear()


def run_tune(
    arguments: Sequence[str],
    *,
    config_file: str | Path | None = None,
    registry: PluginRegistry | None = None,
    options: TuneOptions | None = None,
) -> TuneResult:
    """Search the space in `arguments` (``key=DISTRIBUTION``; other ``key=value`` are fixed)
    and write the best configuration, its command and a report in the tune directory.

    Running it again with the same ``run_dir`` (and ``--storage``/``--study``) continues the
    study: finished trials are kept, and the trials a killed process was running resume from
    their checkpoints.
    """
    return Tuner(arguments, config_file=config_file, registry=registry, options=options).run()


def _grid_size(grid: dict[str, list[Any]]) -> int:
    size = 1
    for values in grid.values():
        size *= len(values)
    return size


def _check_job(composed: ComposedConfig, tune_dir: Path) -> TrialJob:
    return TrialJob(
        name="check",
        run_dir=tune_dir,
        config_path=tune_dir,
        log_path=tune_dir,
        pid_path=tune_dir,
        description="plugin check",
        composed=composed,
    )


def _tune_dir(composed: ComposedConfig) -> Path:
    if composed.run.run_dir:
        path = Path(composed.run.run_dir)
    else:
        path = Path(composed.run.runs_root) / f"tune-{time.strftime('%Y%m%d-%H%M%S')}"
        suffix, base = 1, path
        while path.exists():
            suffix += 1
            path = base.with_name(f"{base.name}-{suffix}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _tune_file(tuner: Tuner) -> str:
    import yaml

    return yaml.safe_dump(
        {
            "study": tuner.study_name,
            "storage": studies.masked(tuner.storage_url),
            "trials": tuner.budget,
            **tuner.settings(),
        },
        sort_keys=False,
    )
