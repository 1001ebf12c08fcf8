"""The ``serial`` backend: trials one after another in this process (the default)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from twcore.contract.errors import DivergenceError, TwcoreError, UsageError
from twcore.orchestration.api import resume, run_composed
from twcore.orchestration.backends.base import Backend, OnOutcome, TrialJob, TrialOutcome
from twcore.orchestration.backends.trial import has_started, wait_for_earlier_worker
from twcore.orchestration.backends.trial_callbacks import callbacks_for
from twcore.orchestration.console import warn
from twcore.orchestration.engine.threads import pinned_threads


class SerialBackend(Backend):
    """Each trial in this process; a trial that raises is retried (resumed from its
    checkpoint) up to ``retries`` times, and the sweep goes on with the next one."""

    name = "serial"

    def run(self, jobs: Iterable[TrialJob], on_outcome: OnOutcome) -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(self.options.threads_per_trial)
        try:
            with pinned_threads(self.options.threads_per_trial):  # what threads=auto uses
                self._run_all(jobs, on_outcome)
        finally:
            torch.set_num_threads(threads)

    def _run_all(self, jobs: Iterable[TrialJob], on_outcome: OnOutcome) -> None:
        for job in jobs:
            outcome = self._run_one(job)
            on_outcome(job, outcome)
            if outcome.status == "interrupted":
                raise KeyboardInterrupt

    def _run_one(self, job: TrialJob) -> TrialOutcome:
        wait_for_earlier_worker(job)
        outcome = TrialOutcome(status="failed")
        for attempt in range(1, self.options.retries + 2):
            outcome.attempts = attempt
            try:
                callbacks = callbacks_for(job.callback_spec)
                if has_started(job.run_dir):
                    result = resume(
                        job.run_dir, show_progress=self.options.show_progress, callbacks=callbacks
                    )
                else:
                    result = run_composed(
                        job.composed, show_progress=self.options.show_progress, callbacks=callbacks
                    )
            except KeyboardInterrupt:
                outcome.status, outcome.error = "interrupted", "interrupted by the user"
                return outcome
            except DivergenceError as exc:
                outcome.status, outcome.error = "diverged", str(exc)
                return outcome
            except UsageError as exc:
                outcome.status, outcome.error = "failed", str(exc)
                return outcome
            except Exception as exc:  # a crashing plugin: retry from the checkpoint
                described = (
                    str(exc) if isinstance(exc, TwcoreError) else f"{type(exc).__name__}: {exc}"
                )
                outcome.status, outcome.error = "failed", described
                warn(f"{job.description}: attempt {attempt} failed: {outcome.error}")
                continue
            outcome.summary = result.summary
            outcome.status = result.summary["status"]
            outcome.error = result.summary.get("error")
            return outcome
        return outcome
