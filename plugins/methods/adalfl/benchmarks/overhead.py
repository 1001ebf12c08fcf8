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
from twcore.orchestration.bench import matmul_flops_per_step
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
            profile(
                task,
                options(task, "adalfl", "profile"),
                options(task, "ew", "profile-plain"),
                args.steps,
            )


def profile(task: str, options: dict, plain_options: dict, steps: int, rows: int = 12) -> None:
    """The ops with the most self CPU time in one AdaLFL run, in ms per step, and the aten
    calls a step of AdaLFL and of plain training make (set-up included)."""
    adalfl_events = _events(options)
    plain_events = _events(plain_options)
    events = sorted(adalfl_events, key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) / 1000 / steps
    print(f"\nAdaLFL on {task}: {total:.2f} ms of op time per step; the largest:\n")
    print("| op | calls per step | self ms per step |")
    print("|---|---|---|")
    for event in events[:rows]:
        per_step = event.self_cpu_time_total / 1000 / steps
        print(f"| {event.key} | {event.count / steps:.1f} | {per_step:.2f} |")
    calls = {
        name: _aten_calls(found) / steps
        for name, found in (("AdaLFL", adalfl_events), ("plain", plain_events))
    }
    print(f"\naten calls per step: AdaLFL {calls['AdaLFL']:.0f}, plain {calls['plain']:.0f}")


def _events(options: dict) -> list:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as profiler:
        api.run(options)
    return list(profiler.key_averages())


def _aten_calls(events: list) -> int:
    return sum(e.count for e in events if e.key.startswith("aten::"))


if __name__ == "__main__":
    main()
