"""Finding the runs of a sweep directory and what each swept."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twcore.contract.errors import UsageError
from twcore.orchestration.engine.summary import finished
from twcore.orchestration.report.curves import read_metrics

TUNE_FILE = "tune.yaml"
"""The file ``twcore tune`` writes in its directory (its runs are ``trial-N/seed-S``)."""


@dataclass
class RunRecord:
    """One completed run: its directory, summary and the values its sweep varied."""

    run_dir: Path
    summary: dict[str, Any]
    swept: dict[str, str]
    _log: list[dict] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def log(self) -> list[dict]:
        """The run's ``metrics.jsonl`` records, read once (figures and the workspace share
        them)."""
        if self._log is None:
            self._log = read_metrics(self.run_dir)
        return self._log

    @property
    def task(self) -> str:
        return self.summary["config"]["task"]["name"]

    @property
    def method(self) -> str:
        return self.summary["config"]["method"]["name"]

    @property
    def seed(self) -> int:
        return int(self.summary["config"]["seed"])

    def label(self, keys: list[str]) -> tuple[str, ...]:
        """The row this run belongs to: its values of `keys` (plugin keys give the name)."""
        values = []
        for key in keys:
            if key in self.swept:
                values.append(self.swept[key])
                continue
            values.append(config_value(self.summary["config"], key))
        return tuple(values)


def collect_runs(sweep_dir: str | Path) -> tuple[list[RunRecord], list[str]]:
    """The completed runs under `sweep_dir` and the keys its sweep varied.

    Uses the sweep's ``results.json`` when there is one (it records what each trial swept), and
    otherwise every ``*/summary.json`` below the directory (``*/*/summary.json`` in a ``twcore
    tune`` directory, marked by its ``tune.yaml``). UsageError if it holds no completed run.
    """
    records = read_runs(sweep_dir)
    if not records:
        raise UsageError(f"{sweep_dir} holds no completed run (no */summary.json)")
    keys: list[str] = []
    for record in records:
        keys.extend(k for k in record.swept if k not in keys)
    keys.extend(k for k in differing_keys(records) if k not in keys)
    return records, keys


def read_runs(sweep_dir: str | Path, *, completed: bool = True) -> list[RunRecord]:
    """The runs under `sweep_dir` (see :func:`collect_runs`): those that completed, or with
    `completed` False every run with a readable ``summary.json`` (diverged, failed and
    interrupted ones too). UsageError if `sweep_dir` is not a directory."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise UsageError(f"{sweep_dir} is not a directory; give a sweep directory")
    swept_by_dir: dict[Path, dict[str, str]] = {}
    results = root / "results.json"
    if results.exists():
        for trial in json.loads(results.read_text(encoding="utf-8")).get("trials", []):
            swept_by_dir[(root / trial["name"]).resolve()] = dict(trial.get("swept", {}))
    records = []
    # A sweep's runs are its subdirectories; a tune's one level further (trial-N/seed-S).
    pattern = "*/*/summary.json" if (root / TUNE_FILE).exists() else "*/summary.json"
    for summary_path in sorted(root.glob(pattern)):
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if completed and not finished(summary.get("status")):
            continue
        run_dir = summary_path.parent.resolve()
        records.append(RunRecord(run_dir, summary, swept_by_dir.get(run_dir, {})))
    return records


NOT_CONFIGURATION = (
    "run_dir",
    "runs_root",
    "wandb",
    "label",
    "device",
    "plugin_modules",
    "plugin_paths",
    "imported_plugin_modules",
    "imported_plugin_paths",
)
"""Config keys that say where and how a run was recorded, not what it trained: runs differing
only in these are one configuration."""
PLUGIN_SECTIONS = ("method", "task", "model")


def differing_keys(records: list[RunRecord]) -> list[str]:
    """The config keys whose values differ between `records` (seed included), so that runs of
    different configurations never share a report row, however the runs were made (a sweep,
    ``twcore tune``, your own script). A plugin whose name differs is one key (``method``),
    not each of its options. A key some runs' configs lack (an option their plugin's version
    did not have yet) differs only where the runs that have it disagree."""
    flat = [_flatten(r.summary["config"]) for r in records]
    all_keys = list(dict.fromkeys(k for f in flat for k in f))
    differing = [
        k for k in all_keys if len({json.dumps(f[k], default=str) for f in flat if k in f}) > 1
    ]
    plugins_differing = {k for k in differing if k in PLUGIN_SECTIONS}
    return [
        k for k in differing if k.split(".", 1)[0] not in plugins_differing or k in PLUGIN_SECTIONS
    ]


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if not prefix and key in NOT_CONFIGURATION:
            continue
        if isinstance(value, dict):
            if "name" in value and not prefix:
                flat[dotted] = value["name"]
            flat.update(_flatten({k: v for k, v in value.items() if k != "name"}, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def config_value(config: dict[str, Any], key: str) -> str:
    """A dotted key's value in a resolved config, as text (a plugin section gives its name)."""
    node: Any = config
    for part in key.split("."):
        node = node.get(part, "") if isinstance(node, dict) else ""
    if isinstance(node, dict):
        return str(node.get("name", ""))
    if isinstance(node, list):
        return "[" + ",".join(str(v) for v in node) + "]"
    return str(node)
