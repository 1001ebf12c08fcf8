"""Tuned against default hyperparameters: L-DRO on its synthetic points, TaskMet on cubic top-k.

For each method, ``twcore tune`` searches the method's own hyperparameters (TPE, median
pruning, two seeds per configuration, validation objective), then the default and the tuned
configuration are each trained on three *other* seeds and compared on the test split, so the
comparison is not flattered by the seeds the search saw.

    python3 benchmarks/tuning.py [--trials 24] [--out benchmarks/results/tuning.md]

Takes about 15 minutes on 2 cores; writes a markdown table (and the tune directories under
``runs/tuning-benchmark``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import twcore
from twcore.orchestration.tune import TuneOptions, run_tune

os.environ.setdefault("WANDB_MODE", "offline")

TUNE_SEEDS = (0, 1)
EVAL_SEEDS = (2, 3, 4)


@dataclass
class Case:
    """One method on one task: what is fixed, what is searched, and what is judged."""

    name: str
    fixed: list[str]
    space: list[str]
    defaults: dict[str, str]
    objective: str
    test_metrics: tuple[str, ...]


CASES = [
    Case(
        name="L-DRO on ldro-points",
        fixed=[
            "method=ldro",
            "task=ldro-points",
            "model=linear",
            "optim.lr=0.02",
            "steps=600",
            "eval_every=50",
        ],
        space=[
            "method.step_size=loguniform(1e-3,1)",
            "method.lookahead=loguniform(1e-2,10)",
            "method.interaction_every=choice(1,10,100)",
        ],
        defaults={
            "method.step_size": "0.01",
            "method.lookahead": "0.1",
            "method.interaction_every": "100",
        },
        objective="min:worst_loss",
        test_metrics=("worst_loss", "avg_loss"),
    ),
    Case(
        name="TaskMet on cubic-topk",
        fixed=["method=taskmet", "task=cubic-topk", "model=linear", "steps=30", "eval_every=5"],
        space=[
            "method.outer_lr=loguniform(1e-4,1e-1)",
            "method.init_scale=loguniform(1e-3,1)",
        ],
        defaults={"method.outer_lr": "0.001", "method.init_scale": "0.01"},
        objective="max:ndq",
        test_metrics=("ndq", "mse"),
    ),
]


def evaluate(case: Case, values: dict[str, str], root: Path) -> dict[str, list[float]]:
    """Test metrics of `values` on the evaluation seeds."""
    found: dict[str, list[float]] = {m: [] for m in case.test_metrics}
    for seed in EVAL_SEEDS:
        overrides = [*case.fixed, *(f"{k}={v}" for k, v in values.items()), f"seed={seed}"]
        result = twcore.run([*overrides, f"run_dir={root / f'seed-{seed}'}"])
        for metric in case.test_metrics:
            found[metric].append(float(result.summary["metrics"]["test"][metric]))
    return found


def cell(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4g} ± {spread:.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--out", default="benchmarks/results/tuning.md")
    parser.add_argument("--root", default="runs/tuning-benchmark")
    options = parser.parse_args()
    root = Path(options.root) / time.strftime("%Y%m%d-%H%M%S")
    lines = [
        "# Tuned against default hyperparameters",
        "",
        f"`python3 benchmarks/tuning.py --trials {options.trials}`: TPE with median pruning, "
        f"{options.trials} trials of seeds {', '.join(map(str, TUNE_SEEDS))} (validation, mean); "
        f"then default and tuned on seeds {', '.join(map(str, EVAL_SEEDS))}, test split, "
        "mean ± std.",
        "",
    ]
    for number, case in enumerate(CASES):
        started = time.perf_counter()
        tune_dir = root / f"tune-{number}"
        result = run_tune(
            [*case.fixed, *case.space, f"run_dir={tune_dir}"],
            options=TuneOptions(
                trials=options.trials, seeds=list(TUNE_SEEDS), objective=case.objective
            ),
        )
        assert result.best is not None, f"{case.name}: no trial completed"
        tuned = {
            k: repr(v) if isinstance(v, float) else str(v) for k, v in result.best.params.items()
        }
        states = [t.state for t in result.trials]
        default_scores = evaluate(case, case.defaults, root / f"default-{number}")
        tuned_scores = evaluate(case, tuned, root / f"tuned-{number}")
        minutes = (time.perf_counter() - started) / 60
        lines += [
            f"## {case.name}",
            "",
            f"Search: {', '.join(f'`{s}`' for s in case.space)}; objective `{case.objective}` "
            f"(validation). {states.count('complete')} complete, {states.count('pruned')} "
            f"pruned, {states.count('fail')} failed; {minutes:.1f} min in all.",
            "",
            "| | "
            + " | ".join(case.defaults)
            + " | "
            + " | ".join(f"test {m}" for m in case.test_metrics)
            + " |",
            "|---|" + "---|" * (len(case.defaults) + len(case.test_metrics)),
            "| default | "
            + " | ".join(case.defaults.values())
            + " | "
            + " | ".join(cell(default_scores[m]) for m in case.test_metrics)
            + " |",
            "| tuned | "
            + " | ".join(f"{float(tuned[k]):.4g}" for k in case.defaults)
            + " | "
            + " | ".join(cell(tuned_scores[m]) for m in case.test_metrics)
            + " |",
            "",
            f"Best trial {result.best.number}: validation {case.objective} = "
            f"{result.best.value:.4g} (tune directory `{tune_dir}`).",
            "",
        ]
        print("\n".join(lines[-10:]), flush=True)
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
