"""The claims ledger: verdicts recomputed from hand-written runs, against scipy's own tests and
closed forms; a grid with a missing plugin skipped and reported; the ledger of a real
reproduction; every installed grid's claims well-posed."""

from __future__ import annotations

import importlib
import json
import math
import shutil
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from scipy import stats

from tests.test_report import _registry
from twcore.contract.errors import ConfigError
from twcore.contract.grids import Claim, ReproductionGrid, as_arguments, as_value, seeds
from twcore.contract.hookspecs import hookimpl
from twcore.orchestration.cli.main import main
from twcore.orchestration.config.compose import compose
from twcore.orchestration.registry import PluginRegistry, PluginSource, get_registry, use_registry
from twcore.orchestration.report.ledger import (
    ALPHA,
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    NOT_RUN,
    ArmResult,
    Ledger,
    compute_ledger,
    decide,
    ledger_markdown,
    same_value,
    seeds_to_decide,
    write_ledger,
)
from twcore.orchestration.report.ledger_rewrite import ledger_from_document, rewrite_ledger
from twcore.orchestration.reproduction import record_invocation, recorded_time, run_reproduction
from twcore.orchestration.sweep import expand
from twcore.testing.reference import ReferencePlugins


def arm(label: str, values: list[float], seeds: list[int] | None = None) -> ArmResult:
    return ArmResult(label, tuple(seeds or range(len(values))), tuple(values))


# -- the test itself ------------------------------------------------------------------------


def test_a_clear_paired_advantage_holds_with_scipys_p_value() -> None:
    treatment = arm("t", [0.91, 0.93, 0.92, 0.95])
    baseline = arm("b", [0.85, 0.88, 0.86, 0.87])
    decision = decide(treatment, baseline, direction="max")
    assert decision.verdict == HOLDS
    reference = stats.ttest_rel(treatment.values, baseline.values, alternative="greater")
    assert decision.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert decision.effect == pytest.approx(0.0625)
    assert decision.test == "paired t-test, n=4"
    low, high = decision.interval
    assert low > 0 and high > decision.effect


def test_a_lower_is_better_metric_flips_the_sign() -> None:
    low_loss, high_loss = arm("t", [0.1, 0.12, 0.11]), arm("b", [0.3, 0.33, 0.29])
    assert decide(low_loss, high_loss, direction="min").verdict == HOLDS
    assert decide(high_loss, low_loss, direction="min").verdict == DOES_NOT_HOLD
    assert decide(low_loss, high_loss, direction="max").verdict == DOES_NOT_HOLD


def test_noise_around_no_difference_is_inconclusive_and_says_how_many_seeds_would_decide() -> None:
    treatment = arm("t", [0.90, 0.80, 0.95])
    baseline = arm("b", [0.85, 0.86, 0.84])
    decision = decide(treatment, baseline, direction="max")
    assert decision.verdict == INCONCLUSIVE
    differences = [0.05, -0.06, 0.11]
    spread = stats.tstd(differences)
    n = decision.seeds_to_decide
    assert n is not None and n > 3
    # The smallest n whose one-sided bound excludes zero at the observed effect and spread.
    effect = sum(differences) / 3
    bound = lambda k: stats.t.ppf(0.95, k - 1) * spread / math.sqrt(k)  # noqa: E731
    assert bound(n) < abs(effect) <= bound(n - 1)


def test_unpaired_seeds_use_welchs_test() -> None:
    treatment = arm("t", [0.91, 0.93, 0.92, 0.95], seeds=[0, 1, 2, 3])
    baseline = arm("b", [0.85, 0.88, 0.86], seeds=[4, 5, 6])
    decision = decide(treatment, baseline, direction="max")
    reference = stats.ttest_ind(
        treatment.values, baseline.values, equal_var=False, alternative="greater"
    )
    assert decision.test.startswith("Welch")
    assert decision.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert decision.verdict == HOLDS


def test_a_non_inferiority_margin_lets_a_slightly_worse_treatment_hold() -> None:
    treatment = arm("t", [0.899, 0.912, 0.902])
    baseline = arm("b", [0.90, 0.915, 0.904])
    assert decide(treatment, baseline, direction="max").verdict == DOES_NOT_HOLD
    held = decide(treatment, baseline, direction="max", margin=-0.01)
    assert held.verdict == HOLDS
    # The margin shifts the null hypothesis: the p-value is scipy's for the shifted differences.
    shifted = [t - b + 0.01 for t, b in zip(treatment.values, baseline.values, strict=True)]
    reference = stats.ttest_1samp(shifted, 0.0, alternative="greater")
    assert held.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    # Far below the margin: does not hold even as "no worse than, within 0.01".
    worse = arm("t", [0.80, 0.81, 0.805])
    assert decide(worse, baseline, direction="max", margin=-0.01).verdict == DOES_NOT_HOLD


def test_the_interval_is_scipys_90_percent_confidence_interval() -> None:
    treatment, baseline = arm("t", [0.5, 0.62, 0.71, 0.55]), arm("b", [0.45, 0.5, 0.69, 0.58])
    low, high = decide(treatment, baseline, direction="max").interval
    paired = stats.ttest_rel(treatment.values, baseline.values).confidence_interval(0.90)
    assert (low, high) == pytest.approx((paired.low, paired.high), rel=1e-9)
    unpaired = arm("b", [0.45, 0.5, 0.69], seeds=[7, 8, 9])
    low, high = decide(treatment, unpaired, direction="max").interval
    welch = stats.ttest_ind(treatment.values, unpaired.values, equal_var=False)
    reference = welch.confidence_interval(0.90)
    assert (low, high) == pytest.approx((reference.low, reference.high), rel=1e-9)


def test_partly_shared_seeds_are_paired_on_the_shared_ones() -> None:
    treatment = arm("t", [0.9, 0.91, 0.93, 0.5], seeds=[0, 1, 2, 3])
    baseline = arm("b", [0.8, 0.82, 0.81], seeds=[0, 1, 2])
    decision = decide(treatment, baseline, direction="max")
    assert decision.test == "paired t-test, n=3"
    assert decision.effect == pytest.approx((0.1 + 0.09 + 0.12) / 3)


def test_one_seed_is_inconclusive_and_says_why() -> None:
    decision = decide(arm("t", [0.9]), arm("b", [0.1]), direction="max")
    assert decision.verdict == INCONCLUSIVE
    assert "2 or more" in decision.reason
    assert decision.effect == pytest.approx(0.8)


def test_without_a_spread_a_sign_test_decides_from_five_seeds() -> None:
    # Dyadic values: every difference is exactly 0.125.
    three_t, three_b = arm("t", [0.5, 0.625, 0.75]), arm("b", [0.375, 0.5, 0.625])
    decision = decide(three_t, three_b, direction="max")
    assert decision.verdict == INCONCLUSIVE and decision.test == "sign test (no spread), n=3"
    assert decision.p_value == 0.125 and decision.seeds_to_decide == 5
    five_t = arm("t", [0.5, 0.625, 0.75, 0.875, 0.25])
    five_b = arm("b", [0.375, 0.5, 0.625, 0.75, 0.125])
    assert decide(five_t, five_b, direction="max").verdict == HOLDS
    assert decide(five_b, five_t, direction="max").verdict == DOES_NOT_HOLD
    # All equal to the margin: no advantage either way.
    assert decide(five_b, five_b, direction="max").verdict == INCONCLUSIVE


def test_seeds_to_decide_is_none_without_an_effect() -> None:
    assert seeds_to_decide(0.0, 1.0) is None
    assert seeds_to_decide(1e-9, 1.0) is None  # beyond any affordable number of seeds


# -- the ledger of hand-written runs ------------------------------------------------------------


def write_run(
    sweep: Path,
    name: str,
    label: str,
    seed: int,
    task: str,
    acc: float | None,
    method: str = "m",
    status: str = "completed",
) -> None:
    run = sweep / name
    run.mkdir(parents=True)
    summary = {
        "config": {
            "label": label,
            "seed": seed,
            "task": {"name": task},
            "method": {"name": method},
        },
        "metrics": {"test": {"acc": acc}},
        "task": {"primary_metric": "acc", "primary_mode": "max", "metric_directions": None},
        "status": status,
    }
    (run / "summary.json").write_text(json.dumps(summary))


CLAIMS = (
    Claim("a beats b on easy", "acc", "a", "b", where={"task": "easy"}),
    Claim("b beats a on easy", "acc", "b", "a", where={"task": "easy"}),
    Claim("a beats b on hard", "acc", "a", "b", where={"task": "hard"}),
    Claim("a beats c", "acc", "a", "c", where={"task": "easy"}),
    Claim("a beats b anywhere", "acc", "a", "b"),
)


def hand_written_grid(root: Path) -> ReproductionGrid:
    easy = {"a": [0.9, 0.92, 0.91], "b": [0.8, 0.83, 0.81]}
    hard = {"a": [0.5, 0.7, 0.4], "b": [0.55, 0.45, 0.6]}
    index = 0
    for task, arms in (("easy", easy), ("hard", hard)):
        for label, values in arms.items():
            for seed, value in enumerate(values):
                write_run(root / "g" / "sweep-0", f"r{index}", f"g/{label}", seed, task, value)
                index += 1
    write_run(root / "g" / "sweep-0", "diverged", "g/b", 7, "easy", None, status="diverged")
    return ReproductionGrid("g", "hand-written", (), (), paper="Paper A", claims=CLAIMS)


def test_the_ledger_decides_each_claim_from_the_runs(tmp_path: Path) -> None:
    grid = hand_written_grid(tmp_path)
    ledger = compute_ledger([grid], tmp_path, quick=False, seconds=125.0)
    verdicts = {e.claim.text: e.decision.verdict for e in ledger.entries}
    assert verdicts == {
        "a beats b on easy": HOLDS,
        "b beats a on easy": DOES_NOT_HOLD,
        "a beats b on hard": INCONCLUSIVE,
        "a beats c": NOT_RUN,
        "a beats b anywhere": NOT_RUN,
    }
    entries = {e.claim.text: e for e in ledger.entries}
    easy = entries["a beats b on easy"]
    assert easy.treatment.values == (0.9, 0.92, 0.91)
    assert easy.baseline.values == (0.8, 0.83, 0.81)  # the diverged run has no value ...
    assert easy.baseline.unfinished == 1  # ... and is shown
    assert easy.treatment.mean == pytest.approx(0.91)
    assert easy.treatment.std == pytest.approx(0.01)
    assert "no finished run of 'c' with task=easy" in entries["a beats c"].decision.reason
    assert "two runs with seed 0" in entries["a beats b anywhere"].decision.reason
    assert ledger.counts() == {HOLDS: 1, DOES_NOT_HOLD: 1, INCONCLUSIVE: 1, NOT_RUN: 2}

    path = write_ledger(ledger, tmp_path / "out")
    text = path.read_text()
    assert "## Paper A" in text and "in 2.1 minutes" in text and "Smoke" not in text
    assert "| holds | 1 |" in text
    document = json.loads((tmp_path / "out" / "claims.json").read_text())
    assert document["seconds"] == 125.0 and not document["quick"]
    first = document["claims"][0]
    assert first["verdict"] == HOLDS and first["treatment"]["values"] == [0.9, 0.92, 0.91]


def test_a_verdict_for_an_arm_with_failed_runs_is_inconclusive(tmp_path: Path) -> None:
    grid = hand_written_grid(tmp_path)
    write_run(tmp_path / "g" / "sweep-0", "failed", "g/a", 8, "easy", None, status="failed")
    entries = {e.claim.text: e for e in compute_ledger([grid], tmp_path, quick=False).entries}
    favoured = entries["a beats b on easy"].decision
    assert favoured.verdict == INCONCLUSIVE
    assert "1 run(s) of 'a' did not finish" in favoured.reason and "'holds'" in favoured.reason
    # "b beats a" does not hold on the finished seeds: a verdict in 'a's favour, so it too is
    # inconclusive.
    assert entries["b beats a on easy"].decision.verdict == INCONCLUSIVE


def test_in_a_grid_without_labels_an_arm_is_a_method(tmp_path: Path) -> None:
    for seed, (fast, slow) in enumerate([(0.9, 0.7), (0.92, 0.71), (0.91, 0.69)]):
        write_run(tmp_path / "u" / "sweep-0", f"f{seed}", "u", seed, "easy", fast, method="fast")
        write_run(tmp_path / "u" / "sweep-0", f"s{seed}", "u", seed, "easy", slow, method="slow")
    claim = Claim("fast beats slow", "acc", "fast", "slow")
    grid = ReproductionGrid("u", "unlabelled", (), (), paper="P", claims=(claim,))
    (entry,) = compute_ledger([grid], tmp_path, quick=False).entries
    assert entry.decision.verdict == HOLDS
    assert entry.treatment.values == (0.9, 0.92, 0.91)


def test_a_claim_on_two_learned_weights_of_one_arm_reads_their_last_logged_values(
    tmp_path: Path,
) -> None:
    """``last:KEY`` is the last value a run logged under KEY; the same arm's two weights are
    paired by seed, in the claim's own direction (the task declares none for a weight)."""
    finals = {0: (0.7, 0.5), 1: (0.72, 0.49), 2: (0.69, 0.52)}
    for seed, (helpful, harmful) in finals.items():
        write_run(tmp_path / "w" / "sweep-0", f"r{seed}", "w/m", seed, "easy", 0.9)
        lines = [
            {"step": 1, "train/weight/helpful": 1.0, "train/weight/harmful": 1.0},
            {"step": 2, "train/weight/helpful": helpful, "train/weight/harmful": harmful},
            {"step": 2, "test/acc": 0.9},  # a later line without the key
        ]
        text = "\n".join(json.dumps(line) for line in lines) + "\n"
        (tmp_path / "w" / "sweep-0" / f"r{seed}" / "metrics.jsonl").write_text(text)
    above = Claim(
        "m weights helpful above harmful", "last:train/weight/helpful", "m", "m",
        baseline_metric="last:train/weight/harmful", direction="max",
    )  # fmt: skip
    below = Claim(
        "m weights helpful below harmful", "last:train/weight/helpful", "m", "m",
        baseline_metric="last:train/weight/harmful", direction="min",
    )  # fmt: skip
    undirected = Claim(
        "no direction", "last:train/weight/helpful", "m", "m",
        baseline_metric="last:train/weight/harmful",
    )  # fmt: skip
    grid = ReproductionGrid("w", "weights", (), (), paper="P", claims=(above, below, undirected))
    ledger = compute_ledger([grid], tmp_path, quick=False)
    first, second, third = ledger.entries
    assert first.treatment.values == (0.7, 0.72, 0.69)
    assert first.baseline.values == (0.5, 0.49, 0.52)
    assert first.decision.verdict == HOLDS and first.decision.test.startswith("paired")
    assert second.decision.verdict == DOES_NOT_HOLD
    assert third.decision.verdict == NOT_RUN and "give the claim a direction" in (
        third.decision.reason
    )
    text = write_ledger(ledger, tmp_path / "out").read_text()
    assert "last:train/weight/helpful vs last:train/weight/harmful (max)" in text
    document = json.loads((tmp_path / "out" / "claims.json").read_text())
    assert document["claims"][0]["baseline_metric"] == "last:train/weight/harmful"


def test_a_claim_whose_direction_contradicts_the_tasks_or_whose_value_is_not_finite(
    tmp_path: Path,
) -> None:
    grid = hand_written_grid(tmp_path)  # acc: the task's primary metric, maximised
    write_run(tmp_path / "g" / "sweep-0", "nan", "g/a", 9, "easy", float("nan"))
    against = Claim("a beats b, lower is better", "acc", "a", "b", where={"task": "easy"},
                    direction="min")  # fmt: skip
    grid = ReproductionGrid("g", "hand-written", (), (), paper="Paper A", claims=(against,))
    (entry,) = compute_ledger([grid], tmp_path, quick=False).entries
    assert entry.decision.verdict == NOT_RUN
    assert entry.decision.reason == "the claim's direction min contradicts the task's max for acc"
    same = Claim("a beats b", "acc", "a", "b", where={"task": "easy"}, direction="max")
    grid = ReproductionGrid("g", "hand-written", (), (), paper="Paper A", claims=(same,))
    (entry,) = compute_ledger([grid], tmp_path, quick=False).entries
    assert entry.treatment.values == (0.9, 0.92, 0.91)  # the NaN run is not a value ...
    assert entry.treatment.unfinished == 1  # ... but a run that did not give one
    assert entry.decision.verdict == INCONCLUSIVE  # so a verdict in a's favour is not taken


def test_a_claim_that_compares_an_arm_with_itself_or_names_no_direction_is_refused() -> None:
    with pytest.raises(ValueError, match="compares 'm' with itself on acc"):
        Claim("m beats m", "acc", "m", "m")
    with pytest.raises(ValueError, match="direction='up'; give 'max', 'min'"):
        Claim("m beats n", "acc", "m", "n", direction="up")


def test_a_quick_ledger_is_labelled_a_smoke_version(tmp_path: Path) -> None:
    grid = with_readings(hand_written_grid(tmp_path), {"b beats a on easy": "a reading"})
    text = ledger_markdown(compute_ledger([grid], tmp_path, quick=True))
    assert "Smoke version" in text
    assert not readings_of(text)  # readings are of the full runs' verdicts


# -- readings, and a ledger read back from its JSON -------------------------------------------


def with_readings(grid: ReproductionGrid, readings: dict[str, str]) -> ReproductionGrid:
    """`grid` with its claims given `readings` by claim text."""
    claims = tuple(replace(c, reading=readings.get(c.text, "")) for c in grid.claims)
    return replace(grid, claims=claims)


def readings_of(text: str) -> list[str]:
    """The lines of the ledger's readings list."""
    return [line for line in text.splitlines() if line.startswith("- *")]


def test_readings_are_printed_where_a_claim_does_not_hold_or_is_inconclusive(
    tmp_path: Path,
) -> None:
    everyone = {c.text: f"why {c.text}" for c in CLAIMS}
    grid = hand_written_grid(tmp_path)
    ledger = compute_ledger([with_readings(grid, everyone)], tmp_path, quick=False)
    assert readings_of(ledger_markdown(ledger)) == [
        "- *b beats a on easy* (does not hold): why b beats a on easy",
        "- *a beats b on hard* (inconclusive): why a beats b on hard",
    ]
    # A claim that does not hold without a reading is named as unread; the others say nothing.
    bare = compute_ledger([grid], tmp_path, quick=False)
    assert readings_of(ledger_markdown(bare)) == [
        "- *b beats a on easy* (does not hold): no reading written yet (the grid's claim gives "
        "none)"
    ]
    write_ledger(ledger, tmp_path / "out")
    document = json.loads((tmp_path / "out" / "claims.json").read_text())
    assert {c["claim"]: c["reading"] for c in document["claims"]} == everyone


def test_a_ledger_read_back_from_its_json_is_written_again_byte_for_byte(tmp_path: Path) -> None:
    grid = with_readings(hand_written_grid(tmp_path), {"b beats a on easy": "a reading"})
    ledger = compute_ledger([grid], tmp_path, quick=False, seconds=125.0, untimed=["other"])
    out = tmp_path / "out"
    markdown = write_ledger(ledger, out).read_text()
    document = (out / "claims.json").read_text()
    assert "did not finish" in markdown and "not run" in markdown  # every kind of entry

    rewrite_ledger(out, [grid])
    assert (out / "CLAIMS.md").read_text() == markdown
    assert (out / "claims.json").read_text() == document
    # Without the grid installed the recorded readings stay.
    rewrite_ledger(out, [])
    assert (out / "CLAIMS.md").read_text() == markdown


def test_rewriting_takes_the_installed_readings_and_keeps_every_number(tmp_path: Path) -> None:
    grid = hand_written_grid(tmp_path)
    written = with_readings(grid, {"b beats a on easy": "the old reading"})
    out = tmp_path / "out"
    first = write_ledger(compute_ledger([written], tmp_path, quick=False), out).read_text()
    edited = with_readings(grid, {"b beats a on easy": "the new reading"})
    # Reading back needs no run: the runs could be gone.
    shutil.rmtree(tmp_path / "g")
    second = rewrite_ledger(out, [edited]).read_text()
    assert second == first.replace("the old reading", "the new reading") != first
    again = ledger_from_document(json.loads((out / "claims.json").read_text()))
    before = compute_ledger([grid], tmp_path, quick=False).entries
    assert [e.claim.reading for e in again.entries][1] == "the new reading"
    assert all(e.decision.verdict == NOT_RUN for e in before)  # the runs are gone ...
    assert [e.decision.verdict for e in again.entries] == [  # ... the recorded verdicts stay
        HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, NOT_RUN, NOT_RUN,
    ]  # fmt: skip


def test_a_ledger_written_before_unfinished_runs_were_counted_is_refused(
    tmp_path: Path, capsys
) -> None:
    grid = hand_written_grid(tmp_path)
    write_ledger(compute_ledger([grid], tmp_path, quick=False), tmp_path / "out")
    document = json.loads((tmp_path / "out" / "claims.json").read_text())
    for claim in document["claims"]:  # as older twcore wrote it ('b' had a run diverge)
        del claim["treatment"]["unfinished"], claim["baseline"]["unfinished"]
    (tmp_path / "out" / "claims.json").write_text(json.dumps(document))
    with use_registry(_claimed_registry()):
        assert main(["reproduce", "--rewrite-ledger", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "written by an older twcore" in err and len(err.strip().splitlines()) == 1


def test_rewriting_several_ledgers_writes_none_if_one_is_bad(tmp_path: Path, capsys) -> None:
    grid = hand_written_grid(tmp_path)
    good, other = tmp_path / "good", tmp_path / "other"
    markdown = write_ledger(compute_ledger([grid], tmp_path, quick=False), good).read_text()
    (good / "CLAIMS.md").write_text("stale")
    write_ledger(compute_ledger([grid], tmp_path, quick=False), other)
    document = json.loads((other / "claims.json").read_text())
    document["alpha"] = 0.1
    (other / "claims.json").write_text(json.dumps(document))
    with use_registry(_claimed_registry()):
        assert main(["reproduce", "--rewrite-ledger", str(good), str(other)]) == 2
        assert "decided at α = 0.1, not this twcore's 0.05" in capsys.readouterr().err
        assert (good / "CLAIMS.md").read_text() == "stale"  # nothing written
        assert main(["reproduce", "--rewrite-ledger", str(good)]) == 0
    assert (good / "CLAIMS.md").read_text() == markdown


def test_rewrite_ledger_refuses_a_directory_without_a_ledger_and_flags_it_ignores(
    tmp_path: Path, capsys
) -> None:
    with use_registry(_claimed_registry()):
        assert main(["reproduce", "--rewrite-ledger", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "claims.json does not exist" in err and len(err.strip().splitlines()) == 1
        (tmp_path / "claims.json").write_text('{"claims": [{"grid": "g"}]}')
        assert main(["reproduce", "--rewrite-ledger", str(tmp_path)]) == 2
        assert "is not a claims ledger" in capsys.readouterr().err
        (tmp_path / "claims.json").write_text("[1, 2]")
        assert main(["reproduce", "--rewrite-ledger", str(tmp_path)]) == 2
        assert "is not a claims ledger (not an object)" in capsys.readouterr().err
        (tmp_path / "claims.json").write_text("not json")
        assert main(["reproduce", "--rewrite-ledger", str(tmp_path)]) == 2
        assert "is not a readable ledger" in capsys.readouterr().err
        code = main(["reproduce", "--quick", "steps=3", "--rewrite-ledger", str(tmp_path)])
        assert code == 2
        assert "leave out --quick, key=value settings" in capsys.readouterr().err
        # A setting after DIR ... is taken as a directory by the parser: still refused.
        assert main(["reproduce", "--rewrite-ledger", str(tmp_path), "steps=3"]) == 2
        assert "leave out key=value settings" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claims.json"]


# -- twcore reproduce -----------------------------------------------------------------------


COMMON = {"method": "reference-method", "task": "reference-task", "model": "reference-model"}


class ClaimedGridPlugin:
    """A grid whose two arms differ in training length, with claims that must hold and must not,
    and a grid that needs a plugin nobody installed."""

    @staticmethod
    @hookimpl
    def twcore_reproduction_grids(register) -> None:
        arms = (("short", 2), ("long", 60))
        register(
            ReproductionGrid(
                name="claimed-grid",
                description="more steps train further",
                sweeps=(),
                quick=tuple(
                    as_arguments({**COMMON, "label": label, "steps": steps, "seed": "0,1,2"})
                    for label, steps in arms
                ),
                paper="The reference paper",
                claims=(
                    Claim("training longer helps", "main_acc", "long", "short"),
                    Claim("training longer hurts", "main_acc", "short", "long"),
                ),
            )
        )
        register(
            ReproductionGrid(
                name="missing-grid",
                description="needs a task that is not installed",
                sweeps=(),
                quick=(as_arguments({**COMMON, "task": "reference-task,no-such-task"}),),
                claims=(Claim("never decided", "main_acc", "x", "y"),),
            )
        )


def _claimed_registry() -> PluginRegistry:
    registry = PluginRegistry(autoload=False)
    registry.add_plugin(ReferencePlugins(), PluginSource("reference"))
    registry.add_plugin(ClaimedGridPlugin(), PluginSource("claimed-grids"))
    return registry


def test_reproduce_writes_the_ledger_and_skips_a_grid_whose_plugin_is_missing(
    tmp_path: Path, capsys
) -> None:
    done = run_reproduction(
        quick=True,
        out_dir=tmp_path / "runs",
        report_dir=tmp_path / "docs",
        registry=_claimed_registry(),
        extra=["wandb.enabled=false"],
    )
    err = capsys.readouterr().err
    assert "grid missing-grid skipped: needs task 'no-such-task', not installed" in err
    assert done.skipped == {"missing-grid": "needs task 'no-such-task', not installed"}
    verdicts = {e.claim.text: e.decision.verdict for e in done.ledger.entries}
    assert verdicts == {
        "training longer helps": HOLDS,
        "training longer hurts": DOES_NOT_HOLD,
        "never decided": NOT_RUN,
    }
    assert (tmp_path / "docs" / "report.md").exists()
    text = (tmp_path / "docs" / "CLAIMS.md").read_text()
    assert "Smoke version" in text and "grid `missing-grid` skipped" in text
    assert not (tmp_path / "runs" / "report.md").exists()

    # Reported again from the same runs, without running: the same verdicts.
    again = run_reproduction(
        quick=True, out_dir=tmp_path / "runs", registry=_claimed_registry(), run=False
    )
    assert again.seconds is None and not again.sweeps
    decided = [e.decision for e in again.ledger.entries if e.grid == "claimed-grid"]
    assert decided == [e.decision for e in done.ledger.entries if e.grid == "claimed-grid"]
    # ... and its ledger still records how long the runs took.
    assert 0 < again.ledger.seconds <= done.seconds  # the runs' time, without the report's
    assert again.ledger.seconds == done.ledger.seconds
    assert again.ledger.invocations == 1

    # Run again with every run complete: it runs nothing and leaves the recorded time alone.
    arguments = {"quick": True, "out_dir": tmp_path / "runs", "extra": ["wandb.enabled=false"]}
    reused = run_reproduction(**arguments, only=["claimed-grid"], registry=_claimed_registry())
    assert reused.ledger.seconds == done.ledger.seconds and reused.ledger.invocations == 1
    # One run removed and made again: that invocation's time is added to the first one's.
    removed = sorted((tmp_path / "runs" / "claimed-grid").glob("sweep-0/*/summary.json"))[0]
    shutil.rmtree(removed.parent)
    resumed = run_reproduction(**arguments, only=["claimed-grid"], registry=_claimed_registry())
    assert resumed.ledger.invocations == 2
    assert done.ledger.seconds < resumed.ledger.seconds <= done.ledger.seconds + resumed.seconds
    # A grid whose record is gone: its runs are decided, and the ledger says their time is not
    # in the time it gives.
    (tmp_path / "runs" / "claimed-grid" / "reproduction.json").unlink()
    untimed = run_reproduction(
        quick=True, out_dir=tmp_path / "runs", registry=_claimed_registry(), run=False
    )
    assert untimed.ledger.untimed == ("claimed-grid",) and untimed.ledger.seconds is None
    text = (tmp_path / "runs" / "CLAIMS.md").read_text()
    assert "no invocation recorded the time of the runs of `claimed-grid`" in text


def test_a_ledger_assembled_from_several_invocations_adds_their_times(tmp_path: Path) -> None:
    grids = [ReproductionGrid(name, "", (), ()) for name in ("a", "b", "c", "d")]
    record_invocation(tmp_path, grids[:2], quick=False, seconds=60.0)
    record_invocation(tmp_path, grids[2:3], quick=False, seconds=30.0)
    assert recorded_time(tmp_path, grids) == (90.0, 2)  # "a" and "b" share one invocation
    assert recorded_time(tmp_path, grids[3:]) == (None, 0)
    # "d", recorded by an older twcore (one invocation, no list), then resumed: both count
    old = {"started": "2026-01-01T00:00:00", "seconds": 5.0, "grids": ["d"], "quick": False}
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "reproduction.json").write_text(json.dumps(old))
    record_invocation(tmp_path, grids[3:], quick=False, seconds=7.0, resumed={"d"})
    assert recorded_time(tmp_path, grids[3:]) == (12.0, 2)
    # "c" made afresh: its earlier invocation no longer counts
    record_invocation(tmp_path, grids[2:3], quick=False, seconds=4.0)
    assert recorded_time(tmp_path, grids[2:3]) == (4.0, 1)


def test_quick_and_full_runs_of_a_grid_do_not_mix_and_report_only_knows_which(
    tmp_path: Path, capsys
) -> None:
    out = tmp_path / "runs"
    run_reproduction(
        quick=True,
        only=["claimed-grid"],
        out_dir=out,
        registry=_claimed_registry(),
        extra=["wandb.enabled=false"],
    )
    with pytest.raises(ConfigError, match="holds the --quick runs of grid claimed-grid"):
        run_reproduction(
            quick=False, only=["claimed-grid"], out_dir=out, registry=_claimed_registry()
        )
    # Re-reported through the command line without --quick: still labelled a smoke version,
    # with no W&B files among the report's.
    with use_registry(_claimed_registry()):
        code = main(
            ["reproduce", "--report-only", "--out", str(out), "--report-dir", str(tmp_path / "d")]
        )
    assert code == 0
    assert "Smoke version" in (tmp_path / "d" / "CLAIMS.md").read_text()
    assert not (tmp_path / "d" / "wandb").exists()
    assert "1 holds, 1 does not hold" in capsys.readouterr().out


def test_a_grid_whose_runs_all_fail_still_gets_its_ledger(tmp_path: Path, capsys) -> None:
    done = run_reproduction(
        quick=True,
        only=["claimed-grid"],
        out_dir=tmp_path / "runs",
        registry=_claimed_registry(),
        extra=["wandb.enabled=false", "optim.lr=1e38"],
    )
    assert done.report is None
    assert "no run completed" in capsys.readouterr().err
    assert {e.decision.verdict for e in done.ledger.entries} == {NOT_RUN}
    assert (tmp_path / "runs" / "CLAIMS.md").exists()


def test_reproduce_list_names_each_grids_plugins_claims_and_what_is_missing(capsys) -> None:
    with use_registry(_claimed_registry()):
        assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert "claim: training longer helps" in out
    assert "plugins: method: reference-method; task: reference-task; model: reference-model" in out
    assert "missing-grid: needs a task that is not installed [skipped: needs task" in out


def test_reproduce_refuses_when_every_selected_grid_is_missing_a_plugin(
    tmp_path: Path, capsys
) -> None:
    with use_registry(_claimed_registry()):
        code = main(["reproduce", "--quick", "--only", "missing-grid", "--out", str(tmp_path)])
    assert code == 2
    assert "needs task 'no-such-task'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_report_only_needs_an_existing_directory(tmp_path: Path, capsys) -> None:
    with use_registry(_registry()):
        code = main(["reproduce", "--report-only", "--out", str(tmp_path / "none")])
    assert code == 2
    assert "not a directory" in capsys.readouterr().err


# -- the installed grids --------------------------------------------------------------------


def installed() -> list[ReproductionGrid]:
    return get_registry().reproduction_grids()


@pytest.mark.parametrize("grid", installed(), ids=lambda g: g.name)
def test_every_installed_grid_states_well_posed_claims(grid: ReproductionGrid) -> None:
    """Each grid names its paper and claims, each claim's text once (a ledger's reading is
    matched to its claim by it); every claim's arms are labels its sweeps (full and quick) run,
    and its `where` settings are ones they set or options of its task."""
    assert grid.paper and grid.claims, f"{grid.name} states no paper or claims"
    texts = [claim.text for claim in grid.claims]
    assert len(set(texts)) == len(texts), f"{grid.name} states a claim twice"
    registry = get_registry()
    for sweeps in (grid.sweeps, grid.quick):
        labels = {a.removeprefix("label=") for s in sweeps for a in s if a.startswith("label=")}
        unlabelled = [s for s in sweeps if not any(a.startswith("label=") for a in s)]
        labels |= {
            name
            for s in unlabelled
            for a in s
            if a.startswith("method=")
            for name in a.removeprefix("method=").split(",")
        }
        keys = {a.partition("=")[0] for s in sweeps for a in s}
        for claim in grid.claims:
            if sweeps is grid.quick and not {claim.treatment, claim.baseline} <= labels:
                continue  # the quick version may run a subset of the arms
            assert {claim.treatment, claim.baseline} <= labels, (grid.name, claim.text)
            for key in set(claim.where) - keys:  # left at its default by the sweeps
                section, _, option = key.partition(".")
                task = claim.where.get("task", "")
                assert section == "task" and task, (grid.name, claim.text, key)
                assert hasattr(compose([f"task={task}"]).sections["task"], option), (grid.name, key)
    for kind, names in grid.plugins().items():
        assert set(names) <= set(registry.names(kind)), (grid.name, kind)


REPOSITORY = Path(__file__).resolve().parents[1]
COMMITTED = sorted(
    path.parent.relative_to(REPOSITORY)
    for pattern in ("benchmarks/*/claims.json", "plugins/*/*/docs/**/claims.json")
    for path in REPOSITORY.glob(pattern)
)
"""The ledgers committed in the repository (the combined one, the quick one, each grid's)."""


@pytest.mark.parametrize("directory", COMMITTED, ids=str)
def test_each_committed_ledger_is_its_json_written_with_the_installed_readings(
    directory: Path,
) -> None:
    document = json.loads((REPOSITORY / directory / "claims.json").read_text(encoding="utf-8"))
    ledger = ledger_from_document(document, installed())
    assert document["alpha"] == ALPHA and document["counts"] == ledger.counts()
    assert (REPOSITORY / directory / "CLAIMS.md").read_text(encoding="utf-8") == ledger_markdown(
        ledger
    ), f"run python3 -m twcore reproduce --rewrite-ledger {directory}"
    if not document["quick"]:  # every claim that does not hold is read
        unread = [
            e.claim.text
            for e in ledger.entries
            if e.claim.reading == "" and e.decision.verdict == DOES_NOT_HOLD
        ]
        assert not unread


def test_the_committed_ledgers_are_found() -> None:
    assert Path("benchmarks/reproduction") in COMMITTED and len(COMMITTED) >= 10


def setting(trial: dict[str, str], key: str) -> str:
    """A trial's value of `key`: its override, else the task option's default."""
    if key in trial:
        return trial[key]
    section, _, option = key.partition(".")
    assert section == "task", key
    return as_value(getattr(compose([f"task={trial['task']}"]).sections["task"], option))


@pytest.mark.parametrize("grid", installed(), ids=lambda g: g.name)
def test_every_claim_of_an_installed_grid_selects_one_full_run_per_seed(
    grid: ReproductionGrid,
) -> None:
    """Expanded without running, the full sweeps give each arm of each claim at least one run
    and at most one per seed (a `where` value with a typo, or too loose, fails here)."""
    trials = []
    for arguments in grid.sweeps:
        for combination in expand(arguments)[1]:
            trials.append({override.key: override.text for override in combination})
    for claim in grid.claims:
        for arm_name in (claim.treatment, claim.baseline):
            seeds = [
                trial.get("seed", "0")
                for trial in trials
                if trial.get("label", trial.get("method")) == arm_name
                and all(
                    same_value(setting(trial, key), as_value(value))
                    for key, value in claim.where.items()
                )
            ]
            assert seeds, (grid.name, claim.text, arm_name)
            assert len(seeds) == len(set(seeds)), (grid.name, claim.text, arm_name, seeds)


def test_each_plugin_declares_the_plugins_its_grids_run() -> None:
    """A plugin package whose grids run other packages' plugins lists those distributions in
    its ``reproduce`` extra (or its dependencies)."""
    registry = get_registry()
    distribution = {(r.kind, r.name): r.source.distribution for r in registry.registrations()}
    root = Path(__file__).resolve().parents[1]
    checked = 0
    for pyproject in sorted(root.glob("plugins/*/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        for target in project.get("entry-points", {}).get("twcore", {}).values():
            hook = getattr(importlib.import_module(target), "twcore_reproduction_grids", None)
            if hook is None:
                continue
            grids: list[ReproductionGrid] = []
            hook(register=grids.append)
            needed = {
                distribution[(kind, name)]
                for grid in grids
                for kind, names in grid.plugins().items()
                for name in names
            } - {project["name"]}
            declared = {
                canonicalize_name(Requirement(requirement).name)
                for requirement in (
                    *project.get("dependencies", []),
                    *project.get("optional-dependencies", {}).get("reproduce", []),
                )
            }
            needed = {canonicalize_name(name) for name in needed}
            assert needed <= declared, (project["name"], sorted(needed - declared))
            checked += 1
    assert checked >= 8


def test_seeds_spells_the_first_seeds_as_a_sweep_value() -> None:
    assert seeds(1) == "0"
    assert seeds(10).split(",") == [str(seed) for seed in range(10)]
    with pytest.raises(ValueError, match="at least one seed"):
        seeds(0)


def test_a_ledger_with_an_untimed_grid_names_it_beside_the_time_it_gives(tmp_path: Path) -> None:
    ledger = Ledger([], quick=False, seconds=120.0, invocations=2, untimed=("cartpole",))
    text = write_ledger(ledger, tmp_path).read_text()
    assert "from the runs in 2.0 minutes (over 2 invocations); the time of the runs of " in text
    assert "`cartpole` was not recorded and is not in it" in text
    assert json.loads((tmp_path / "claims.json").read_text())["untimed"] == ["cartpole"]
