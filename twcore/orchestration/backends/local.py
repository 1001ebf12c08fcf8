"""The ``local`` backend: trials in parallel worker processes on this machine."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from twcore.orchestration.backends.base import Backend, OnOutcome, TrialJob, TrialOutcome
from twcore.orchestration.backends.trial import (
    LiveProcesses,
    check_workers_know,
    execute_trial,
    worker_environment,
)


class LocalBackend(Backend):
    """`workers` trials at once, each in its own ``python -m twcore`` process (a crash or a
    killed worker affects only its trial, which is resumed from its checkpoint)."""

    name = "local"

    def check_plugins(self, jobs: Sequence[TrialJob]) -> None:
        check_workers_know(jobs, worker_environment(self.options.threads_per_trial), self.name)

    def run(self, jobs: Sequence[TrialJob], on_outcome: OnOutcome) -> None:
        if not jobs:
            return
        live = LiveProcesses()
        environment = worker_environment(self.options.threads_per_trial)
        with ThreadPoolExecutor(max_workers=self.options.workers) as pool:
            futures: dict[Future[TrialOutcome], TrialJob] = {
                pool.submit(
                    execute_trial,
                    job,
                    retries=self.options.retries,
                    environment=environment,
                    live=live,
                ): job
                for job in jobs
            }
            pending = set(futures)
            try:
                while pending:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in done:
                        on_outcome(futures[future], future.result())
            except KeyboardInterrupt:
                for future in pending:  # first, so that no queued trial starts meanwhile
                    future.cancel()
                live.interrupt_all()
                for future in pending:
                    if not future.cancelled():
                        on_outcome(futures[future], future.result())
                raise
