"""Seconds per training epoch of an MNIST task with `ew`, per model, on a fixed thread count.

    python3 plugins/tasks/mnist/benchmarks/epoch_time.py                     # mnist-multitask
    python3 plugins/tasks/mnist/benchmarks/epoch_time.py --task multimnist --models cnn

One epoch is ceil(train_size / batch_size) steps; the time is the run's training wall time
(forward, backward, optimiser and logging; no evaluation), W&B off.
"""

from __future__ import annotations

import argparse
import math
import tempfile

import torch

from twcore.orchestration import api


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist-multitask")
    parser.add_argument("--models", nargs="*", default=["cnn", "mlp"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (CI has 2 cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = math.ceil(args.train_size / args.batch_size)
    print(
        f"task={args.task} train_size={args.train_size} batch_size={args.batch_size} "
        f"steps/epoch={steps} threads={args.threads}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            result = api.run(
                [
                    f"task={args.task}",
                    f"task.train_size={args.train_size}",
                    f"model={model}",
                    "method=ew",
                    f"steps={steps}",
                    f"batch_size={args.batch_size}",
                    "eval_every=0",
                    "checkpoint_every=0",
                    "wandb.enabled=false",
                    f"runs_root={tmp}",
                ]
            )
            print(
                f"{model}: {result.summary['wall_time_s']:.2f} s/epoch, "
                f"test {result.summary['task']['primary_metric']} = "
                f"{result.metrics['test'][result.summary['task']['primary_metric']]:.3f}"
            )


if __name__ == "__main__":
    main()
