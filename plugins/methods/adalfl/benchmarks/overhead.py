"""Time per step of AdaLFL relative to plain training (the base loss), in one process.

    python3 plugins/methods/adalfl/benchmarks/overhead.py [--tasks digits mnist diabetes]
        [--model mlp] [--steps 400] [--repeats 3] [--optimizer adam]
        [--set model.hidden=[1024,1024] ...] [--profile]

With --profile, one more AdaLFL run and one plain run per task under ``torch.profiler`` print
where the time of a step goes: the ops with the most self CPU time, per step, and the aten calls
a step of each makes (averaged over --steps steps, set-up included, so use enough steps).

W&B off, no evaluation, no checkpoints: the whole training wall time of each run divided by its
steps. Each configuration runs --repeats times, alternating; the fastest run counts.

The last column is the ratio of the matrix-product FLOPs (matmuls and convolutions, forward and
every backward pass, counted by ``torch.utils.flop_counter``) of a step of each: the time ratio
AdaLFL would have if nothing but those products cost time. A step's count is the difference
between a 6-step and a 2-step run, so set-up and the final evaluation cancel.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from twcore.orchestration import api
from twcore.orchestration.bench import matmul_flops_per_step, op_profile
from twcore.orchestration.config.overrides import parse_override


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=["digits", "mnist", "diabetes"])
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="further run options"
    )
    parser.add_argument("--profile", action="store_true", help="print AdaLFL's op profile")
    args = parser.parse_args()
    extra = {}
    for setting in args.set:
        override = parse_override(setting)  # the command line's own parsing of values
        extra[override.key] = override.value
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="adalfl-overhead-"))
    settings = f" ({' '.join(args.set)})" if args.set else ""
    print(
        f"{args.model}{settings}, {args.optimizer}, {args.steps} steps, batch 64, "
        f"best of {args.repeats}\n"
    )
    print("| task | plain ms per step | AdaLFL ms per step | ratio | matmul FLOP ratio |")
    print("|---|---|---|---|---|")

    def options(task: str, method: str, run: str) -> dict:
        return {
            "method": method,
            "task": task,
            "model": args.model,
            "steps": args.steps,
            "batch_size": 64,
            "optim.name": args.optimizer,
            "eval_every": 0,
            "log_every": 100,
            "checkpoint_every": 0,
            "wandb.enabled": False,
            "run_dir": str(root / f"{task}-{method}-{run}"),
            **extra,
        }

    for task in args.tasks:
        best = {"ew": float("inf"), "adalfl": float("inf")}
        for repeat in range(args.repeats):
            for method in best:
                result = api.run(options(task, method, str(repeat)))
                best[method] = min(best[method], result.summary["wall_time_s"] / args.steps)
        ratio = best["adalfl"] / best["ew"]
        flops = {
            method: matmul_flops_per_step(
                options(task, method, "flops"),
                short=2,
                long=6,
                root=root / f"{task}-{method}-flops",
            )
            for method in best
        }
        print(
            f"| {task} | {1000 * best['ew']:.2f} | {1000 * best['adalfl']:.2f} | {ratio:.2f} "
            f"| {flops['adalfl'] / flops['ew']:.2f} |"
        )
    if args.profile:
        for task in args.tasks:
            table = op_profile(
                options(task, "adalfl", "profile"),
                args.steps,
                baseline=options(task, "ew", "profile-plain"),
            )
            print(f"\nAdaLFL on {task} (baseline: plain training): {table}")


if __name__ == "__main__":
    main()
