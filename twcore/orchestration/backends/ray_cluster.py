"""The ``ray`` backend: each trial a Ray task on a cluster (a local one if no address).

Every task runs the trial's worker process on its node (:func:`execute_trial`: resume from the
checkpoint, retries), so the nodes need twcore and the plugins installed and the sweep
directory on a shared filesystem. Ray itself re-runs a task whose node died (``max_retries``),
and that attempt resumes from the checkpoint too. Install with ``pip install 'twcore[ray]'``.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterable, Sequence
from typing import Any

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

    def run(self, jobs: Iterable[TrialJob], on_outcome: OnOutcome) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ConfigError(
                "--backend ray needs Ray: pip install 'twcore[ray]' (or pip install ray)"
            ) from exc
        queued = iter(jobs)
        first = next(queued, None)
        if first is None:  # nothing to run: no cluster to start
            return
        queued = itertools.chain([first], queued)
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
        environment = worker_environment(threads)
        running: dict[Any, TrialJob] = {}

        def start_next() -> bool:
            job = next(queued, None)
            if job is None:
                return False
            # Without the composed configuration: it holds the plugin classes, which Ray would
            # pickle (a task from arrays with its data); the worker reads the file.
            reference = remote.remote(
                dataclasses.replace(job, composed=None),
                retries=self.options.retries,
                environment=environment,
            )
            running[reference] = job
            return True

        def slots() -> int:
            """Tasks to keep submitted: every job of a fixed list (Ray queues them, and an
            autoscaler sees the demand); for a lazy source (a search choosing each trial from
            the results before it), as many as the cluster has slots for now."""
            if isinstance(jobs, Sequence):
                return len(jobs)
            return max(1, int(ray.cluster_resources().get("CPU", threads)) // threads)

        try:
            while len(running) < slots() and start_next():
                pass
            while running:
                done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                for reference in done:
                    on_outcome(running.pop(reference), ray.get(reference))
                while len(running) < slots() and start_next():
                    pass
        except KeyboardInterrupt:
            for reference in running:
                ray.cancel(reference)
            raise
        finally:
            if started_here:
                ray.shutdown()
