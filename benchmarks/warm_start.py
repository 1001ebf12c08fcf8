"""Wall time of a local sweep of short trials, workers forked warm against fresh processes.

    python3 benchmarks/warm_start.py [--trials 8] [--workers 2] [--steps 50] [--repeats 3]
        [--wandb] [--out benchmarks/results/warm_start.md]

Each repeat runs the same sweep (``task=ldro-points model=linear method=ew seed=0..trials-1``,
one torch thread per trial) twice from this process, once with ``--cold-start`` (every trial a
fresh ``python -m twcore``) and once warm (forked from one process that imported torch, W&B and
twcore), in alternating order; the table gives each arm's median and fastest wall time and the
ratio of the medians. ``--wandb`` logs each trial to an offline W&B run (its start-up is then
part of each trial's cost). The trials train the same bits either way (a test checks this).
Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twcore.orchestration.backends import SweepOptions
from twcore.orchestration.sweep import run_sweep

ARMS = {"fresh processes (--cold-start)": True, "forked warm (default)": False}


def sweep_seconds(arguments: list[str], *, workers: int, cold_start: bool) -> float:
    """Wall seconds of one local sweep of `arguments` in a new temporary directory."""
    with tempfile.TemporaryDirectory() as directory:
        options = SweepOptions(backend="local", workers=workers, threads=1, cold_start=cold_start)
        start = time.perf_counter()
        result = run_sweep([*arguments, f"run_dir={Path(directory) / 'sweep'}"], options=options)
        elapsed = time.perf_counter() - start
    failed = [trial.name for trial in result.trials if trial.status != "completed"]
    if failed:
        raise SystemExit(f"trials did not complete: {', '.join(failed)}")
    return elapsed


PRELOAD_PROBE = (
    "import time; start = time.perf_counter(); "
    "from twcore.orchestration.backends.zygote import preload; preload(); "
    "print(time.perf_counter() - start)"
)


def preload_seconds() -> float:
    """Seconds a fresh interpreter spends importing what the zygote imports once."""
    done = subprocess.run(
        [sys.executable, "-c", PRELOAD_PROBE], capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--wandb", action="store_true", help="offline W&B runs (default: off)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    options = parser.parse_args()
    if options.wandb:
        os.environ.setdefault("WANDB_MODE", "offline")
    seeds = ",".join(str(seed) for seed in range(options.trials))
    arguments = [
        "task=ldro-points",
        "model=linear",
        "method=ew",
        f"seed={seeds}",
        f"steps={options.steps}",
        "eval_every=0",
        f"wandb.enabled={str(options.wandb).lower()}",
    ]
    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    imports = []
    for repeat in range(options.repeats):
        imports.append(preload_seconds())
        order = list(ARMS) if repeat % 2 == 0 else list(reversed(ARMS))
        for arm in order:
            times[arm].append(
                sweep_seconds(arguments, workers=options.workers, cold_start=ARMS[arm])
            )
    medians = {arm: statistics.median(values) for arm, values in times.items()}
    cold, warm = (medians[arm] for arm in ARMS)
    lines = [
        f"Local sweep of {options.trials} trials ({options.steps} steps of `ew` on `ldro-points`,"
        f" `--workers {options.workers}`, one thread each, W&B "
        f"{'offline' if options.wandb else 'off'}), {options.repeats} repeats, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores:",
        "",
        "| workers | median s | fastest s | per trial s |",
        "|---|---|---|---|",
    ]
    for arm, values in times.items():
        lines.append(
            f"| {arm} | {medians[arm]:.1f} | {min(values):.1f} | "
            f"{medians[arm] / options.trials:.2f} |"
        )
    lines += [
        "",
        f"Warm is {cold / warm:.2f}× as fast as fresh processes (ratio of medians). A fresh"
        f" interpreter spends {statistics.median(imports):.1f} s (median of {len(imports)})"
        " importing what the zygote imports once (torch with its compiler, which every torch"
        " optimizer imports, W&B, twcore); the warm sweep pays it once, while its first trials"
        " wait.",
    ]
    table = "\n".join(lines) + "\n"
    print(table, end="")
    if options.out is not None:
        options.out.parent.mkdir(parents=True, exist_ok=True)
        options.out.write_text(
            f"<!-- python3 benchmarks/warm_start.py {shlex.join(sys.argv[1:])} -->\n{table}",
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
