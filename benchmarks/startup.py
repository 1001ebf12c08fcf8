"""Start-up time of the commands that do not train, and which heavy libraries each imports.

    python3 benchmarks/startup.py [--runs 10] [--out benchmarks/results/startup.md]

Each command runs ``--runs`` times as a fresh ``python3 -m twcore ...`` process (after one run
that is not counted, so the file system cache is warm); the table gives the median and the
fastest wall time, and beside them ``python3 -c pass`` (the interpreter alone) and ``python3 -c
"import torch"`` as yardsticks. A second table lists, per command, which of torch, wandb,
matplotlib, numpy, omegaconf, gymnasium, cvxpy and scipy the process had imported when it
finished (read from ``sys.modules`` in the same interpreter). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "wandb", "matplotlib", "numpy", "omegaconf", "gymnasium", "cvxpy", "scipy")
COMMANDS: dict[str, list[str]] = {
    "twcore --version": ["--version"],
    "twcore --help": ["--help"],
    "twcore plugins --json": ["plugins", "--json"],
    "twcore plugins": ["plugins"],
    "twcore show": ["show"],
    "twcore show method=gradcos": ["show", "method=gradcos"],
}
YARDSTICKS: dict[str, list[str]] = {
    "python3 -c pass": ["-c", "pass"],
    'python3 -c "import torch"': ["-c", "import torch"],
}
PROBE = """
import contextlib, io, sys
sys.argv = ["twcore", *{arguments!r}]
from twcore.orchestration.cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    main(sys.argv[1:])
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


def wall_times(arguments: list[str], runs: int) -> list[float]:
    """Wall seconds of `runs` fresh interpreters running ``python3 ARGUMENTS`` (one more first,
    not counted)."""
    times = []
    for index in range(runs + 1):
        start = time.perf_counter()
        subprocess.run([sys.executable, *arguments], capture_output=True, check=False)
        if index:
            times.append(time.perf_counter() - start)
    return times


def heavy_imports(arguments: list[str]) -> str:
    """The heavy libraries a fresh interpreter has imported after running the command."""
    probe = PROBE.format(arguments=arguments, heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    if done.returncode:
        return f"(failed: {done.stderr.strip()[-200:]})"
    lines = done.stdout.splitlines()
    return (lines[-1] if lines else "") or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here")
    options = parser.parse_args()
    lines = [
        f"Wall seconds over {options.runs} fresh processes (median, fastest):",
        "",
        "| command | median s | fastest s | heavy libraries imported |",
        "|---|---:|---:|---|",
    ]
    rows = [
        (label, ["-m", "twcore", *arguments], arguments) for label, arguments in COMMANDS.items()
    ]
    rows += [(label, arguments, None) for label, arguments in YARDSTICKS.items()]
    for label, command, arguments in rows:
        times = wall_times(command, options.runs)
        imported = heavy_imports(arguments) if arguments is not None else "-"
        lines.append(
            f"| `{label}` | {statistics.median(times):.2f} | {min(times):.2f} | {imported} |"
        )
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if options.out:
        options.out.write_text(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
