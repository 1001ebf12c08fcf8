"""Time per step of GradCos and αVIL relative to equal weighting, in one process.

    python3 plugins/methods/gradcos/scripts/overhead.py [--steps 640] [--repeats 3] [--model mlp]
        [--auxiliaries harmful ...] [--train-size 1000]

On `mnist-aux` (main task + three auxiliaries; 1,000 training digits, 16 steps an epoch), W&B
off, no evaluation, no checkpoints: the whole training wall time of each run divided by its
steps, so αVIL's work between epochs (ρ = 0.25 by default) is amortised over the epoch's steps.
Each configuration runs --repeats times, alternating; the fastest run counts.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from twcore import api

CONFIGURATIONS = {
    "ew (plain sum)": {"method": "ew"},
    "GradCos weighted": {"method": "gradcos"},
    "GradCos unweighted": {"method": "gradcos", "method.variant": "unweighted"},
    "αVIL (ρ = 0.25)": {"method": "alphavil"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="mlp")
    parser.add_argument(
        "--auxiliaries", nargs="*", default=None, help="mnist-aux auxiliaries (default: all three)"
    )
    parser.add_argument(
        "--train-size", type=int, default=1000, help="mnist-aux training digits (epoch length)"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    common = {
        "task": "mnist-aux",
        "model": args.model,
        "steps": args.steps,
        "eval_every": 0,
        "log_every": 100,
        "checkpoint_every": 0,
        "wandb.enabled": False,
        "task.train_size": args.train_size,
        "batch_size": 64,
    }
    if args.auxiliaries is not None:
        common["task.auxiliaries"] = args.auxiliaries
    best = dict.fromkeys(CONFIGURATIONS, float("inf"))
    root = Path(tempfile.mkdtemp(prefix="aux-overhead-"))
    for repeat in range(args.repeats):
        for index, (label, options) in enumerate(CONFIGURATIONS.items()):
            run_dir = root / f"{index}-{repeat}"
            result = api.run({**common, **options, "run_dir": str(run_dir)})
            best[label] = min(best[label], result.summary["wall_time_s"] / args.steps)
    auxiliaries = ", ".join(args.auxiliaries) if args.auxiliaries is not None else "all three"
    epoch = -(-args.train_size // 64)
    print(
        f"mnist-aux ({auxiliaries}; {args.train_size} digits, {epoch} steps an epoch), "
        f"{args.model}, {args.steps} steps, best of {args.repeats}\n"
    )
    print("| method | ms per step | ÷ ew's |")
    print("|---|---|---|")
    for label, seconds in best.items():
        ratio = seconds / best["ew (plain sum)"]
        print(f"| {label} | {1000 * seconds:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
