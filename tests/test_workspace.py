"""The team workspace ``twcore report`` writes: the runs of the sweep's W&B group, grouped by
what the sweep varied with a std band, a section per task and one per method from the panels
its plugin declares, matched against what real runs logged."""

from __future__ import annotations

import fnmatch
import json

import pytest

import twcore
from twcore.contract.panels import PANEL_KINDS, Panel
from twcore.orchestration.registry import get_registry
from twcore.orchestration.report import write_report

PAPER_METHODS = ("taskmet", "adalfl", "ldro", "gradcos", "alphavil")


def test_every_paper_method_declares_valid_panels():
    registry = get_registry()
    for name in PAPER_METHODS:
        panels = registry.get("method", name).cls.panels
        assert panels, f"{name} declares no workspace panels"
        assert all(p.kind in PANEL_KINDS and p.keys and p.note for p in panels)
    with pytest.raises(ValueError, match="kind 'pie'; valid: line, media, chart, bar"):
        Panel("x", ("method/x",), "pie")


def test_a_sweeps_workspace_from_real_runs(tmp_path):
    sweep_dir = tmp_path / "sweep"
    for method in ("gradcos", "adalfl", "ldro"):
        extra = ["method.plot_every=6"] if method == "adalfl" else []
        twcore.run(
            [
                f"method={method}",
                "steps=12",
                "eval_every=6",
                "wandb.enabled=false",
                "wandb.group=team-sweep",
                f"run_dir={sweep_dir / method}",
                *extra,
            ]
        )
    write_report([sweep_dir], wandb=False)
    layout = json.loads((sweep_dir / "workspace.json").read_text())
    assert layout["filter"] == {"group": ["team-sweep"]}
    assert layout["group_by"] == ["config.method.name"]
    assert layout["band"] == "std dev"
    sections = {s["name"]: s["panels"] for s in layout["sections"]}
    task = "toy-multitask"
    metric = json.loads((sweep_dir / "ldro" / "summary.json").read_text())["task"]["primary_metric"]
    primary = sections[f"{task}: primary and test metrics"]
    assert [p["keys"] for p in primary[:2]] == [[f"val/{metric}"], [f"best/val/{metric}"]]
    assert f"{task}: learned weights" in sections  # gradcos and ldro learn weights
    for method in ("gradcos", "adalfl", "ldro"):
        declared = get_registry().get("method", method).cls.panels
        panels = sections[f"method: {method}"]
        assert [p["title"] for p in panels] == [p.title for p in declared]
        logged = {
            key
            for line in (sweep_dir / method / "metrics.jsonl").read_text().splitlines()
            for key in json.loads(line)
        }
        for panel in panels:  # every declared key (pattern) is one the run logged
            for pattern in panel["keys"]:
                assert fnmatch.filter(logged, pattern), f"{method}: nothing logged as {pattern}"
            assert set(panel["logged"]) == {
                k for k in logged if any(fnmatch.fnmatchcase(k, p) for p in panel["keys"])
            }
    text = (sweep_dir / "workspace.md").read_text()
    assert "filter *Group* is one of `team-sweep`" in text
    assert "(logged: `method/cosine/" in text
    assert "range *Std Dev*" in text
