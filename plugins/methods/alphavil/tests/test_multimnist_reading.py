"""The MultiMNIST diagnostic's reading of a run's log (``benchmarks/multimnist_reading.py``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from twcore.orchestration.report.collect import RunRecord

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "multimnist_reading.py"


def load_script():
    spec = importlib.util.spec_from_file_location("multimnist_reading", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reading_takes_the_last_and_mean_weights_and_counts_the_searches_that_helped(
    tmp_path: Path,
) -> None:
    log = [
        {"step": 1, "train/weight/left": 1.0, "train/weight/right": 1.0},
        {"step": 2, "train/weight/left": 0.5, "train/weight/right": 1.5},
        {"method/target_val_loss_before": 2.0, "method/target_val_loss_after": 1.5},
        {"step": 3, "train/weight/left": 0.3, "train/weight/right": 1.2},
        {"method/target_val_loss_before": 1.5, "method/target_val_loss_after": 1.6},
        {"method/target_val_loss_before": 1.6, "method/target_val_loss_after": 1.1},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in log))
    summary = {"metrics": {"test": {"main_acc": 0.6}}, "config": {"seed": 0}}
    record = RunRecord(tmp_path, summary, {})
    assert load_script().reading(record) == [0.6, 0.3, 0.6, 1.2, 1.2333333333333334, 2, 3]
