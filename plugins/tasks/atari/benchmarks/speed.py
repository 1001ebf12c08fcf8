"""Atari speed: environment steps per second, and training steps per second of the smoke runs.

    python3 plugins/tasks/atari/benchmarks/speed.py [--env-steps 5000] [--train-steps 500]

Environment rows: random actions, no learning, one ``AtariFrames`` (the emulator plus the
downsampling and frame stack), for two frame sizes. Training rows: whole-run wall time per
step of ``twcore run task=atari-aux`` (one environment step, one replayed batch of 32, no
evaluation) with each model and method, so the cost of learning is seen next to the
environment's.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from twcore_task_atari import AtariFrames
from twcore_task_rl.speed import random_steps_per_second

from twcore.orchestration import api

FRAME_SIZES = (42, 84)
TRAINING = {
    "ew, mlp": {"method": "ew", "model": "mlp"},
    "ew, cnn": {"method": "ew", "model": "cnn"},
    "gradcos, cnn": {"method": "gradcos", "model": "cnn"},
}


def environment_speed(frame_size: int, steps: int) -> float:
    return random_steps_per_second(AtariFrames("breakout", frame_size=frame_size), steps)


def training_speed(options: dict, steps: int, root: Path) -> float:
    result = api.run(
        {
            **options,
            "task": "atari-aux",
            "steps": steps,
            "eval_every": 0,
            "task.eval_episodes": 1,
            "task.max_steps": 10,
            "task.warmup": 100,
            "checkpoint_every": 0,
            "wandb.enabled": False,
            "run_dir": str(root / f"{options['method']}-{options['model']}"),
        }
    )
    return steps / result.summary["wall_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-steps", type=int, default=5000)
    parser.add_argument("--train-steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| what | steps/s |")
    print("|---|---|")
    for size in FRAME_SIZES:
        speed = environment_speed(size, args.env_steps)
        print(f"| breakout, 4 × {size}² frames, environment only | {speed:,.0f} |")
    root = Path(tempfile.mkdtemp(prefix="atari-speed-"))
    for label, options in TRAINING.items():
        speed = training_speed(options, args.train_steps, root)
        print(f"| training, {label} (batch 32, 4 × 42² frames) | {speed:,.0f} |")


if __name__ == "__main__":
    main()
