"""Sweeps never lose a trial: every combination gets a directory of its own, by construction."""

from __future__ import annotations

import itertools
import json
import random
import re

from twcore.orchestration.sweep import MAX_TRIAL_NAME, run_sweep, trial_name

QUIET = ["steps=3", "wandb.enabled=false", "eval_every=0", "checkpoint_every=0"]


def test_values_that_strip_to_the_same_text_get_their_own_trials(tmp_path):
    result = run_sweep(["label=a b,ab", "seed=0,1", *QUIET, f"run_dir={tmp_path}"])
    names = [t.name for t in result.trials]
    assert len(set(names)) == 4, names
    assert all(t.status == "completed" and t.attempts == 1 for t in result.trials)
    summaries = [json.loads((tmp_path / n / "summary.json").read_text()) for n in names]
    assert sorted(s["config"]["label"] for s in summaries) == ["a b", "a b", "ab", "ab"]
    (table,) = result.tables
    assert sorted(table.counts.values()) == [2, 2]  # n=2 per label, no seed missing


def test_long_values_sharing_a_prefix_get_their_own_trials(tmp_path):
    stem = "x" * 130
    result = run_sweep([f"label={stem}1,{stem}2", *QUIET, f"run_dir={tmp_path}"])
    names = [t.name for t in result.trials]
    assert len(set(names)) == 2 and all(len(n) <= MAX_TRIAL_NAME for n in names), names
    assert all(t.status == "completed" for t in result.trials)


def test_plain_values_keep_their_readable_names():
    assert trial_name({"method": "ew", "seed": "0"}) == "method-ew_seed-0"
    assert trial_name({"optim.lr": "1e-3", "method": "group-dro"}) == "lr-1e-3_method-group-dro"
    assert trial_name({}) == "trial"


def test_trial_names_are_unique_within_a_sweep_and_portable_for_arbitrary_values():
    rng = random.Random(7)
    alphabet = "aA_- .,/[]:0é"
    for keys in (["label"], ["label", "seed"], ["label", "task.label"], ["optim.lr", "label"]):
        seen: dict[str, tuple[str, ...]] = {}
        for _ in range(1500):
            values = tuple("".join(rng.choices(alphabet, k=rng.randint(0, 6))) for _ in keys)
            name = trial_name(dict(zip(keys, values, strict=True)))
            assert seen.setdefault(name, values) == values, (keys, name, values, seen[name])
            assert re.fullmatch(r"[a-z0-9_.+-]+(=[0-9a-f]{12})?", name), name
            assert len(name) <= MAX_TRIAL_NAME


def test_a_plain_name_never_equals_a_hashed_one():
    hashed = trial_name({"label": "a b"})
    assert "=" in hashed
    assert trial_name({"label": hashed.removeprefix("label-")}) != hashed


def test_names_never_differ_only_in_case():
    names = [trial_name({"label": a + b}) for a, b in itertools.product("aA", "bB")]
    assert len({n.lower() for n in names}) == 4, names
