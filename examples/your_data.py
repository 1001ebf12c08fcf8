"""Your own data with twcore's methods: scikit-learn's digits as numpy arrays, two objectives,
registered in this process and trained with three methods.

    python examples/your_data.py [--steps 300] [--runs-root runs]
"""

import argparse

from sklearn.datasets import load_digits

import twcore

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--runs-root", default="runs")
arguments = parser.parse_args()

digits = load_digits()
Digits = twcore.task_from_arrays(
    digits.data / 16,
    {"digit": digits.target, "large": (digits.target >= 5).astype(int)},
    objectives={"digit": "classification", "large": "classification"},
    main="digit",
    val=0.2,
    test=0.2,
)
twcore.register("task", "my-digits", Digits)

for method in ("ew", "gradcos", "alphavil"):
    result = twcore.run(
        [
            f"method={method}",
            "task=my-digits",
            f"steps={arguments.steps}",
            f"runs_root={arguments.runs_root}",
        ]
    )
    print(f"{method}: test accuracy {result.metrics['test']['main_acc']:.3f}")
