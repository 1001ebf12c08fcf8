"""The ``ray`` backend: each trial a Ray task on a cluster (a local one if no address).

Every task runs the trial's worker process on its node (:func:`execute_trial`: resume from the
checkpoint, retries), so the nodes need twcore and the plugins installed and the sweep
directory on a shared filesystem. Ray itself re-runs a task whose node died (``max_retries``),
and that attempt resumes from the checkpoint too. Install with ``pip install 'twcore[ray]'``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from twcore.contract.errors import ConfigError
from twcore.orchestration.backends.base import Backend, OnOutcome, TrialJob
from twcore.orchestration.backends.trial import (
    check_workers_know,
    execute_trial,
    worker_environment,
)


class RayBackend(Backend):
    """Trials as Ray tasks; ``--ray-address`` joins a cluster, none starts a local one with
    ``workers`` CPUs and stops it afterwards."""

    name = "ray"

    def check_plugins(self, jobs: Sequence[TrialJob]) -> None:
        check_workers_know(jobs, worker_environment(self.options.threads_per_trial), self.name)

    def run(self, jobs: Sequence[TrialJob], on_outcome: OnOutcome) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ConfigError(
                "--backend ray needs Ray: pip install 'twcore[ray]' (or pip install ray)"
            ) from exc
        if not jobs:
            return
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        threads = self.options.threads_per_trial
        started_here = not ray.is_initialized()
        if started_here:
            if self.options.ray_address:
                ray.init(address=self.options.ray_address, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=self.options.workers * threads,
                    include_dashboard=False,
                    log_to_driver=False,
                )
        remote = ray.remote(num_cpus=threads, max_retries=self.options.retries)(execute_trial)
        references = {
            remote.remote(
                # Without the composed configuration: it holds the plugin classes, which Ray
                # would pickle (a task from arrays with its data); the worker reads the file.
                dataclasses.replace(job, composed=None),
                retries=self.options.retries,
                environment=worker_environment(threads),
            ): job
            for job in jobs
        }
        pending = list(references)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                for reference in done:
                    on_outcome(references[reference], ray.get(reference))
        except KeyboardInterrupt:
            for reference in pending:
                ray.cancel(reference)
            raise
        finally:
            if started_here:
                ray.shutdown()
