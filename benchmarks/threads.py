"""Steps per second with threads=1, threads=<cores> and threads=auto, on an idle and on a busy
machine.

    python3 benchmarks/threads.py [--steps 200] [--busy N] [--methods ew gradcos adalfl]
        [--out benchmarks/results/threads.md]

Each method trains the default task and model (``twcore run``'s defaults) for ``--steps`` steps
in this process, W&B off, no evaluation, once per setting, first on the machine as it is, then
with N busy processes (default: twice the usable cores) that this script starts — each a Python
loop spinning on one core — and stops at the end. ``OMP_NUM_THREADS`` is removed from this
process's environment so that ``auto`` decides. Run it on an otherwise quiet machine: the
"idle" rows assume nothing else runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from twcore.orchestration import api
from twcore.orchestration.engine.threads import usable_cores

SPIN = "while True:\n    pass\n"


@contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """`count` processes each keeping one core busy, stopped on exit."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(count)]
    time.sleep(5)  # let the load average see them
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()


def steps_per_second(method: str, threads: str, steps: int, root: Path) -> tuple[float, int]:
    """A run's training steps per second and the threads it used."""
    result = api.run(
        {
            "method": method,
            "steps": steps,
            "eval_every": 0,
            "checkpoint_every": 0,
            "wandb.enabled": False,
            "threads": threads,
            "run_dir": str(root / f"{method}-{threads}-{time.monotonic_ns()}"),
        }
    )
    return float(result.summary["steps_per_s"]), int(result.summary["threads"]["threads"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = usable_cores()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--busy", type=int, default=2 * cores, help="busy processes to start")
    parser.add_argument("--methods", nargs="+", default=["ew", "gradcos", "adalfl"])
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    options = parser.parse_args(argv)
    os.environ.pop("OMP_NUM_THREADS", None)
    settings = ["1", str(cores), "auto"]
    lines = [
        f"{cores} usable cores; the default task and model, {options.steps} steps; steps/s "
        "(threads used); `python3 benchmarks/threads.py`.",
        "",
        "| machine | method | " + " | ".join(f"threads={s}" for s in settings) + " |",
        "|---|---|" + "---|" * len(settings),
    ]
    print("\n".join(lines), flush=True)
    root = Path(tempfile.mkdtemp(prefix="twcore-threads-"))
    conditions = {"idle": None, f"busy ({options.busy} spinning processes)": options.busy}
    for label, busy in conditions.items():
        context = busy_processes(busy) if busy else _nothing()
        with context:
            for method in options.methods:
                cells = []
                for setting in settings:
                    rate, used = steps_per_second(method, setting, options.steps, root)
                    cells.append(f"{rate:.1f} ({used})")
                row = f"| {label} | {method} | " + " | ".join(cells) + " |"
                print(row, flush=True)
                lines.append(row)
    if options.out is not None:
        options.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    raise SystemExit(main())
