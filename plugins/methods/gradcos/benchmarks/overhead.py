"""Time per step of GradCos and αVIL relative to equal weighting, in one process.

    python3 plugins/methods/gradcos/benchmarks/overhead.py [--steps 640] [--repeats 3] [--model mlp]
        [--task mnist-aux|multimnist] [--auxiliaries harmful ...] [--train-size N]
        [--set task.pairs_per_digit=4 ...] [--profile]

On `mnist-aux` (main task + three auxiliaries by default; 1,000 training digits, 16 steps an
epoch) or `multimnist` (main: left digit, auxiliary: right digit; 3,000 training pairs, 47 steps
an epoch), W&B off, no evaluation, no checkpoints: the whole training wall time of each run
divided by its steps, so αVIL's work between epochs (ρ = 0.25 by default) is amortised over the
epoch's steps. Each configuration runs --repeats times, alternating; the fastest run counts.

The last column is the ratio of matrix-product FLOPs (matmuls and convolutions, forward and
backward, counted by ``torch.utils.flop_counter``) per step to ew's: the time ratio if nothing
but those products cost time. A step's count is the difference between a two-epoch and a
one-epoch run divided by an epoch's steps, so αVIL's work between epochs is included and set-up
and the final evaluation cancel.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from twcore.orchestration import api
from twcore.orchestration.bench import matmul_flops_per_step, op_profile
from twcore.orchestration.config.overrides import parse_override

TASKS = {
    "mnist-aux": {"task": "mnist-aux"},
    "multimnist": {"task": "multimnist", "task.main": "left"},
}
CONFIGURATIONS = {
    "ew (plain sum)": {"method": "ew"},
    "GradCos weighted": {"method": "gradcos"},
    "GradCos unweighted": {"method": "gradcos", "method.variant": "unweighted"},
    "αVIL (ρ = 0.25)": {"method": "alphavil"},
}


def epoch_steps(options: dict) -> int:
    """Training batches in one epoch of the task these options build."""
    from twcore.testing import plugin_harness

    task_options = {k: v for k, v in options.items() if k.startswith("task.")}
    task = plugin_harness("ew", task=options["task"], options=task_options).components.task
    return -(-len(task.split("train").inputs) // options["batch_size"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--task", choices=sorted(TASKS), default="mnist-aux")
    parser.add_argument(
        "--auxiliaries", nargs="*", default=None, help="mnist-aux auxiliaries (default: all three)"
    )
    parser.add_argument(
        "--train-size", type=int, default=None, help="training examples (the epoch length)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--profile", action="store_true", help="print where a step's time goes, per method"
    )
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="further run options"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    common = {
        **TASKS[args.task],
        "model": args.model,
        "steps": args.steps,
        "eval_every": 0,
        "log_every": 100,
        "checkpoint_every": 0,
        "wandb.enabled": False,
        "batch_size": 64,
    }
    if args.train_size is not None:
        common["task.train_size"] = args.train_size
    for setting in args.set:
        override = parse_override(setting)  # the command line's own parsing of values
        common[override.key] = override.value
    if args.auxiliaries is not None:
        if args.task != "mnist-aux":
            parser.error("--auxiliaries applies to --task mnist-aux only")
        common["task.auxiliaries"] = args.auxiliaries
    best = dict.fromkeys(CONFIGURATIONS, float("inf"))
    root = Path(tempfile.mkdtemp(prefix="aux-overhead-"))
    for repeat in range(args.repeats):
        for index, (label, options) in enumerate(CONFIGURATIONS.items()):
            run_dir = root / f"{index}-{repeat}"
            result = api.run({**common, **options, "run_dir": str(run_dir)})
            best[label] = min(best[label], result.summary["wall_time_s"] / args.steps)
    if args.task == "mnist-aux":
        auxiliaries = ", ".join(args.auxiliaries) if args.auxiliaries is not None else "all three"
    else:
        auxiliaries = "main left, auxiliary right"
    print(
        f"{args.task} ({auxiliaries}; {' '.join(args.set) or 'default data'}; "
        f"{epoch_steps(common)} steps an epoch), {args.model}, {args.steps} steps, "
        f"best of {args.repeats}\n"
    )
    epoch = epoch_steps(common)
    flops = {
        label: matmul_flops_per_step(
            {**common, **options}, short=epoch, long=2 * epoch, root=root / f"flops-{index}"
        )
        for index, (label, options) in enumerate(CONFIGURATIONS.items())
    }
    print("| method | ms per step | ÷ ew's | matmul FLOPs ÷ ew's |")
    print("|---|---|---|---|")
    for label, seconds in best.items():
        ratio = seconds / best["ew (plain sum)"]
        flop_ratio = flops[label] / flops["ew (plain sum)"]
        print(f"| {label} | {1000 * seconds:.2f} | {ratio:.2f} | {flop_ratio:.2f} |")
    if args.profile:
        for index, (label, options) in enumerate(CONFIGURATIONS.items()):
            if label == "ew (plain sum)":
                continue
            plain = {
                **common,
                **CONFIGURATIONS["ew (plain sum)"],
                "run_dir": str(root / f"e{index}"),
            }
            profiled = {**common, **options, "run_dir": str(root / f"p-{index}")}
            table = op_profile(profiled, args.steps, baseline=plain)
            print(f"\n{label} (baseline: ew): {table}")


if __name__ == "__main__":
    main()
