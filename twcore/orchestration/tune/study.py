"""The Optuna study a tune works on: its database, sampler and pruner, who runs which trial.

The study lives in a database Optuna opens by URL: ``sqlite:///TUNE_DIR/study.db`` by default,
``postgresql://...`` (or any URL SQLAlchemy and Optuna accept) for a study several machines
share. Several ``twcore tune`` processes can work on one study at once: each asks Optuna for its
next trial (a database transaction, so no two get the same one), and the study's trial budget is
kept by counting the trials before one's own.

A trial a process is running carries that process's *owner* record (host, pid, a random token)
and a heartbeat it refreshes. A trial whose owner is dead — its pid gone on this host, or its
heartbeat older than the grace period on any host — is an orphan: the next ``twcore tune`` on the
study marks it failed (*void*) and enqueues a copy with the same parameters and the same run
directories, so its runs resume from their checkpoints and no finished trial is run again.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twcore.contract.errors import ConfigError
from twcore.orchestration.engine.lock import process_alive

STUDY_FILE = "study.db"
OWNER = "twcore:owner"
HEARTBEAT = "twcore:heartbeat"
RUNS = "twcore:runs"
VOID = "twcore:void"
PRUNED_AT = "twcore:pruned_at"
ERROR = "twcore:error"
SEED_VALUES = "twcore:seed_values"
SETTINGS = "twcore:settings"
JOINS = "twcore:joins"

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "halving", "none")
HEARTBEAT_S = 10.0
SCHEMA_ATTEMPTS = 5


def optuna_module() -> Any:
    """Optuna, or a ConfigError saying how to install it (it is an optional extra)."""
    try:
        import optuna
    except ImportError as exc:
        raise ConfigError(
            "`twcore tune` needs Optuna: pip install 'twcore[tune]' (or pip install optuna)"
        ) from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def storage_url(tune_dir: Path, storage: str | None) -> str:
    """The study database: `storage` as given, or SQLite in the tune directory."""
    return storage or f"sqlite:///{(tune_dir / STUDY_FILE).resolve()}"


def masked(url: str) -> str:
    """`url` with any password replaced by ``***`` (for files and messages)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, at, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***{at}{host}" if ":" in credentials else url


def open_storage(url: str) -> Any:
    """An Optuna RDB storage on `url` (ConfigError naming the URL if it cannot be opened).

    SQLite waits up to a minute for a lock (several processes, and every trial's worker
    reporting intermediate values, write to one file). Two processes creating the tables of a
    new database at once collide; the later one tries again once they exist."""
    optuna = optuna_module()
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}
    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (IntegrityError, OperationalError, ProgrammingError) as exc:
            collided = not isinstance(exc, OperationalError) or "already exists" in str(exc)
            if not collided or attempt == SCHEMA_ATTEMPTS:
                raise _cannot_open(url, exc) from exc
            time.sleep(0.5 * attempt)
        except Exception as exc:  # SQLAlchemy's errors for a bad URL, a server not up, a driver
            raise _cannot_open(url, exc) from exc
    raise AssertionError("unreachable")


def _cannot_open(url: str, exc: Exception) -> ConfigError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ConfigError(f"--storage {masked(url)}: cannot open the study database ({first})")


@dataclass(frozen=True)
class PrunerSpec:
    """A pruner as plain data (the tune process and every trial's worker build the same one).

    Attributes:
        kind: ``median``, ``halving`` (successive halving) or ``none``.
        startup_trials: trials that are never pruned and that the median needs first.
        warmup_steps: steps before which no trial is pruned (median's warm-up, successive
            halving's minimum resource; 0: halving estimates it).
        reduction_factor: successive halving's η (a trial continues if in the top 1/η).
    """

    kind: str = "median"
    startup_trials: int = 2
    warmup_steps: int = 0
    reduction_factor: int = 3

    def build(self) -> Any:
        """The Optuna pruner."""
        optuna = optuna_module()
        if self.kind == "median":
            return optuna.pruners.MedianPruner(
                n_startup_trials=self.startup_trials, n_warmup_steps=self.warmup_steps
            )
        if self.kind == "halving":
            return optuna.pruners.SuccessiveHalvingPruner(
                min_resource=self.warmup_steps or "auto", reduction_factor=self.reduction_factor
            )
        return optuna.pruners.NopPruner()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "startup_trials": self.startup_trials,
            "warmup_steps": self.warmup_steps,
            "reduction_factor": self.reduction_factor,
        }


def build_sampler(kind: str, *, seed: int, startup_trials: int) -> Any:
    """The Optuna sampler: TPE (with a constant liar, so trials running at once spread out),
    or random (also for a grid, whose points are enqueued trials: :func:`enqueue_grid`)."""
    optuna = optuna_module()
    if kind == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup_trials, constant_liar=True
        )
    return optuna.samplers.RandomSampler(seed=seed)


def enqueue_grid(study: Any, grid: Mapping[str, list[Any]], *, seed: int) -> None:
    """Enqueue every point of `grid` once, in an order shuffled by `seed`. (Optuna's own
    GridSampler stops the study from inside ``tell``, which only its ``optimize`` loop allows.)"""
    points = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    random.Random(seed).shuffle(points)
    for point in points:
        study.enqueue_trial(point, skip_if_exists=True)


class Owner:
    """This process as the owner of the trials it runs, with a heartbeat thread."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.record = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}
        self._trials: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name="twcore-tune-heartbeat", daemon=True
        )
        self._thread.start()

    def claim(self, trial_id: int) -> None:
        """Mark `trial_id` as this process's, with a fresh heartbeat."""
        self.storage.set_trial_user_attr(trial_id, OWNER, self.record)
        self.storage.set_trial_user_attr(trial_id, HEARTBEAT, time.time())
        with self._lock:
            self._trials.add(trial_id)

    def release(self, trial_id: int) -> None:
        with self._lock:
            self._trials.discard(trial_id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with self._lock:
                trials = list(self._trials)
            for trial_id in trials:
                try:
                    self.storage.set_trial_user_attr(trial_id, HEARTBEAT, time.time())
                except Exception:  # a finished trial, a database busy for a moment: next beat
                    continue


def is_orphan(user_attrs: Mapping[str, Any], *, grace_s: float, now: float) -> bool:
    """Whether a running trial's owner is gone: its process dead on this host, or its
    heartbeat older than `grace_s` (any host)."""
    owner = user_attrs.get(OWNER)
    if not isinstance(owner, dict):
        return True  # asked for but never claimed: its process died at once
    if owner.get("host") == socket.gethostname() and not process_alive(int(owner.get("pid", -1))):
        return True
    heartbeat = user_attrs.get(HEARTBEAT)
    return not isinstance(heartbeat, int | float) or now - heartbeat > grace_s


def requeue(study: Any, storage: Any, trial: Any, reason: str, *, complete: bool) -> bool:
    """Void `trial` (state FAIL, ``twcore:void`` = `reason`) and, if its parameters are
    `complete` (its runs may have started), enqueue a copy with its parameters and run
    directories; False if another process got there first. Callers hold the study's lock."""
    optuna = optuna_module()
    try:  # the mark first: a finished trial takes no attribute
        storage.set_trial_user_attr(trial._trial_id, VOID, reason)
        changed = storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # another process requeued it first
    if not changed:
        return False
    if complete:
        study.enqueue_trial(dict(trial.params), user_attrs={RUNS: runs_of(trial)})
    return True


def adopt_orphans(study: Any, storage: Any, *, grace_s: float, parameters: int) -> list[int]:
    """Requeue every running trial whose owner is gone (one that died before sampling all
    `parameters` ran nothing: it is only voided); the numbers of those requeued. Callers hold
    the study's lock (so no trial is between being asked for and being claimed)."""
    optuna = optuna_module()
    now = time.time()
    adopted = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if not is_orphan(trial.user_attrs, grace_s=grace_s, now=now):
            continue
        complete = len(trial.params) == parameters
        if requeue(study, storage, trial, "its tune process died; requeued", complete=complete):
            adopted.append(trial.number)
    return adopted


def runs_name(number: int) -> str:
    """The directory (under the tune directory) of trial `number`'s runs."""
    return f"trial-{number:04d}"


def runs_of(trial: Any) -> str:
    """The directory of a trial's runs: the one it inherited as a requeued copy, else its own
    (:func:`runs_name`)."""
    return str(trial.user_attrs.get(RUNS) or runs_name(trial.number))


def counted(trial: Any) -> bool:
    """Whether a trial counts toward the study's budget (void ones do not)."""
    return VOID not in trial.user_attrs


def budget_left(study: Any, budget: int) -> bool:
    """Whether there is a trial to ask for: an enqueued one (a grid point, a requeued trial)
    waits, or fewer than `budget` counted trials were started."""
    trials = [t for t in study.get_trials(deepcopy=False) if counted(t)]
    waiting = sum(1 for t in trials if t.state.name == "WAITING")
    return waiting > 0 or len(trials) < budget


def within_budget(study: Any, number: int, budget: int) -> bool:
    """Whether trial `number` is among the first `budget` counted trials (two processes that
    asked at once: the later trial is over the budget)."""
    before = sum(1 for t in study.get_trials(deepcopy=False) if t.number < number and counted(t))
    return before < budget
