"""Per-step cost of L-DRO relative to equal weighting, measured in one process.

    python3 plugins/methods/ldro/benchmarks/overhead.py [--steps 300] [--repeats 3]

Trains `ew`, then `ldro` with the gradient interactions recomputed every k ∈ {100, 10, 1}
steps, on the shared parameters and on the shared features, on many-task MNIST (20 tasks, cnn,
batch 64), W&B off, no evaluation, and compares the runs' training throughput (``steps_per_s``
in summary.json counts training steps only). Each configuration runs --repeats times,
alternating, and the best throughput is kept (the least disturbed by the rest of the machine).
The paper reports ×1.06 on CIFAR with k = 100.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from twcore.orchestration import api

COMMON = {
    "task": "mnist-multitask",
    "model": "cnn",
    "eval_every": 0,
    "log_every": 50,
    "checkpoint_every": 0,
    "wandb.enabled": False,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    configurations = {"ew": {"method": "ew"}}
    for interaction in ("parameters", "features"):
        for every in (100, 10, 1):
            configurations[f"ldro {interaction} k={every}"] = {
                "method": "ldro",
                "method.interaction_every": every,
                "method.interaction": interaction,
            }
    best = dict.fromkeys(configurations, 0.0)
    root = Path(tempfile.mkdtemp(prefix="ldro-overhead-"))
    for repeat in range(args.repeats):
        for label, options in configurations.items():
            run_dir = root / f"{label.replace(' ', '-').replace('=', '')}-{repeat}"
            result = api.run({**COMMON, **options, "steps": args.steps, "run_dir": str(run_dir)})
            best[label] = max(best[label], result.summary["steps_per_s"])
    print(f"many-task MNIST, 20 tasks, cnn, batch 64, {args.steps} steps, best of {args.repeats}\n")
    print("| method | steps/s | time per step ÷ ew's |")
    print("|---|---|---|")
    for label, throughput in best.items():
        print(f"| {label} | {throughput:.1f} | {best['ew'] / throughput:.3f} |")


if __name__ == "__main__":
    main()
