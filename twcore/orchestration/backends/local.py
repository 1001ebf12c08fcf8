"""The ``local`` backend: trials in parallel worker processes on this machine."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext

from twcore.orchestration.backends.base import Backend, OnOutcome, TrialJob, TrialOutcome
from twcore.orchestration.backends.trial import (
    LiveProcesses,
    check_workers_know,
    execute_trial,
    worker_environment,
)
from twcore.orchestration.backends.warm_start import WarmStarter


class LocalBackend(Backend):
    """`workers` trials at once, each in its own ``twcore`` process (a crash or a killed worker
    affects only its trial, which is resumed from its checkpoint). Each process is forked from
    one that imported torch, W&B and twcore once (:mod:`~twcore.orchestration.backends.
    warm_start`), or with ``cold_start`` started fresh as ``python -m twcore``."""

    name = "local"

    def check_plugins(self, jobs: Sequence[TrialJob]) -> None:
        check_workers_know(jobs, worker_environment(self.options.threads_per_trial), self.name)

    def run(self, jobs: Iterable[TrialJob], on_outcome: OnOutcome) -> None:
        live = LiveProcesses()
        environment = worker_environment(self.options.threads_per_trial)
        queued = iter(jobs)
        starter = None if self.options.cold_start else WarmStarter(environment)
        closing: AbstractContextManager[object] = starter or nullcontext()
        with ThreadPoolExecutor(max_workers=self.options.workers) as pool, closing:
            running: dict[Future[TrialOutcome], TrialJob] = {}

            def start_next() -> bool:
                job = next(queued, None)
                if job is None:
                    return False
                future = pool.submit(
                    execute_trial,
                    job,
                    retries=self.options.retries,
                    environment=environment,
                    live=live,
                    starter=starter,
                )
                running[future] = job
                return True

            try:
                while len(running) < self.options.workers and start_next():
                    pass
                while running:
                    done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in done:
                        on_outcome(running.pop(future), future.result())
                        start_next()
            except KeyboardInterrupt:
                live.interrupt_all()
                for future, job in running.items():
                    on_outcome(job, future.result())
                raise
            except BaseException:  # the job source or a report failed: stop the workers too
                live.interrupt_all()
                raise
