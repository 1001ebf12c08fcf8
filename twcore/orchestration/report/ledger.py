"""The claims ledger: each paper's claims decided from the runs of ``twcore reproduce``.

A claim (:class:`twcore.contract.grids.Claim`) compares two labelled arms of a grid on one test
metric (or one arm on two metrics, such as two learned weights read from its logs). Its verdict
comes from a one-sided t-test at level :data:`ALPHA` of the effect (the treatment's advantage
over the baseline, in the metric's declared direction) against the claim's margin: paired by
seed where both arms ran the same seeds (the runs then share their data order and
initialisation), Welch's otherwise.

- **holds**: the effect exceeds the margin (p < α);
- **does not hold**: the effect is below the margin (p < α the other way);
- **inconclusive**: neither, at this number of seeds (the ledger estimates how many would
  decide it at the observed spread), or fewer than two seeds per arm.

Where the seeds' differences do not spread at all (a saturated or discrete metric), the
t-test has no scale and an exact sign test decides instead (five seeds at the least). A run
that diverged or failed is shown beside its arm, and the claim cannot be decided in that arm's
favour: a treatment that failed on some seeds does not "hold" on the others. Each claim is
tested at level α on its own (no correction for the number of claims).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from twcore.contract.atomic_files import atomic_write_text
from twcore.contract.grids import Claim, ReproductionGrid, as_value
from twcore.orchestration.engine.summary import finished
from twcore.orchestration.report.collect import RunRecord, config_value, read_runs

ALPHA = 0.05
"""The level of each claim's one-sided test."""

HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, NOT_RUN = "holds", "does not hold", "inconclusive", "not run"
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, NOT_RUN)
MOST_SEEDS = 1000
"""The largest number of seeds :func:`seeds_to_decide` proposes."""


@dataclass(frozen=True)
class ArmResult:
    """One arm's values of the claim's metric, per seed of its finished runs, and how many of
    its runs did not finish (diverged, failed, interrupted)."""

    label: str
    seeds: tuple[int, ...]
    values: tuple[float, ...]
    unfinished: int = 0

    @property
    def n(self) -> int:
        """The number of values (finished runs)."""
        return len(self.values)

    @property
    def mean(self) -> float:
        """The values' mean (NaN without values)."""
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        """The values' sample standard deviation (NaN below two values)."""
        return statistics.stdev(self.values) if self.n > 1 else math.nan

    def by_seed(self) -> dict[int, float]:
        """The values keyed by seed."""
        return dict(zip(self.seeds, self.values, strict=True))


@dataclass(frozen=True)
class Decision:
    """The outcome of a claim's test.

    Attributes:
        verdict: one of :data:`VERDICTS`.
        effect: the treatment's mean advantage over the baseline (positive: better).
        interval: the effect's two-sided 90 % confidence interval (the one-sided 95 % bounds).
        p_value: the one-sided p-value of "the effect exceeds the margin".
        test: the test used (``paired t-test, n=5``, ``Welch t-test``).
        seeds_to_decide: for an inconclusive claim, about how many seeds per arm would decide
            it at the observed effect and spread (None if no number would, or it is decided).
        reason: why a claim was not tested ("" when it was).
    """

    verdict: str
    effect: float = math.nan
    interval: tuple[float, float] = (math.nan, math.nan)
    p_value: float = math.nan
    test: str = ""
    seeds_to_decide: int | None = None
    reason: str = ""


def decide(
    treatment: ArmResult, baseline: ArmResult, *, direction: str, margin: float = 0.0
) -> Decision:
    """Test whether `treatment` beats `baseline` by more than `margin` (module docstring):
    paired on the seeds both arms ran when they share two or more, Welch's test otherwise.

    `direction` is the metric's: ``max`` (higher is better) or ``min``.
    """
    from scipy import stats

    if direction not in ("max", "min"):
        raise ValueError(f"direction={direction!r}: give 'max' or 'min'")
    sign = 1.0 if direction == "max" else -1.0
    if treatment.n < 2 or baseline.n < 2:
        return Decision(
            INCONCLUSIVE,
            effect=sign * (treatment.mean - baseline.mean),
            test="none",
            reason=f"{min(treatment.n, baseline.n)} seed(s) in an arm; a test needs 2 or more",
        )
    treated, base = treatment.by_seed(), baseline.by_seed()
    shared = sorted(set(treated) & set(base))
    if len(shared) >= 2:
        differences = [sign * (treated[seed] - base[seed]) for seed in shared]
        effect = statistics.fmean(differences)
        spread = statistics.stdev(differences)
        error, freedom = spread / math.sqrt(len(differences)), float(len(differences) - 1)
        test = f"paired t-test, n={len(differences)}"
    else:
        differences = []
        effect = sign * (treatment.mean - baseline.mean)
        parts = (treatment.std**2 / treatment.n, baseline.std**2 / baseline.n)
        error = math.sqrt(sum(parts))
        spread = math.sqrt(treatment.std**2 + baseline.std**2)
        arms = (treatment, baseline)
        denominator = sum(p**2 / (arm.n - 1) for p, arm in zip(parts, arms, strict=True))
        freedom = sum(parts) ** 2 / denominator if denominator > 0 else 1.0
        test = f"Welch t-test, n={treatment.n}+{baseline.n}"
    excess = effect - margin
    if error == 0.0:
        return sign_test(excess, effect, len(differences) or min(treatment.n, baseline.n))
    t_value = excess / error
    p_value = float(stats.t.sf(t_value, freedom))
    p_below = float(stats.t.cdf(t_value, freedom))
    half_width = float(stats.t.ppf(1 - ALPHA, freedom)) * error
    interval = (effect - half_width, effect + half_width)
    if p_value < ALPHA:
        return Decision(HOLDS, effect, interval, p_value, test)
    if p_below < ALPHA:
        return Decision(DOES_NOT_HOLD, effect, interval, p_value, test)
    return Decision(
        INCONCLUSIVE, effect, interval, p_value, test, seeds_to_decide(abs(excess), spread)
    )


def sign_test(excess: float, effect: float, n: int) -> Decision:
    """The decision when every seed shows the same advantage (no spread): an exact sign test,
    whose p-value is 0.5ⁿ when all n seeds fall on one side of the margin."""
    test = f"sign test (no spread), n={n}"
    if excess == 0:
        return Decision(INCONCLUSIVE, effect, (effect, effect), 0.5, test, reason="no advantage")
    p_value = 0.5**n
    verdict = (HOLDS if excess > 0 else DOES_NOT_HOLD) if p_value < ALPHA else INCONCLUSIVE
    seeds = None if verdict != INCONCLUSIVE else math.ceil(math.log(ALPHA) / math.log(0.5) + 1e-9)
    return Decision(verdict, effect, (effect, effect), p_value if excess > 0 else 1.0, test, seeds)


def seeds_to_decide(distance: float, spread: float) -> int | None:
    """About how many seeds per arm make the one-sided bound at level α exclude the margin,
    when the effect is `distance` from it and the per-seed spread is `spread` (the smallest n
    with t(1-α, n-1)·spread/√n < distance; None above :data:`MOST_SEEDS` or with no
    distance). That is the n at which the observed effect would just be significant: if the
    effect and spread are the true ones, about half of such experiments would decide it (50 %
    power), so read it as a lower bound."""
    from scipy import stats

    if distance <= 0 or not math.isfinite(spread):
        return None
    for n in range(2, MOST_SEEDS + 1):
        if stats.t.ppf(1 - ALPHA, n - 1) * spread / math.sqrt(n) < distance:
            return n
    return None


@dataclass
class LedgerEntry:
    """One claim, its grid and paper, both arms' numbers and the decision."""

    paper: str
    grid: str
    claim: Claim
    metric_direction: str
    treatment: ArmResult
    baseline: ArmResult
    decision: Decision

    def as_dict(self) -> dict[str, Any]:
        def arm(result: ArmResult) -> dict[str, Any]:
            return {
                "label": result.label,
                "seeds": list(result.seeds),
                "values": list(result.values),
                "mean": _json_number(result.mean),
                "std": _json_number(result.std),
                "n": result.n,
                "unfinished": result.unfinished,
            }

        decision = asdict(self.decision)
        decision["effect"] = _json_number(self.decision.effect)
        decision["p_value"] = _json_number(self.decision.p_value)
        decision["interval"] = [_json_number(v) for v in self.decision.interval]
        return {
            "paper": self.paper,
            "grid": self.grid,
            "claim": self.claim.text,
            "metric": self.claim.metric,
            "baseline_metric": self.claim.compared_metric,
            "direction": self.metric_direction,
            "where": dict(self.claim.where),
            "margin": self.claim.margin,
            "paper_numbers": self.claim.paper,
            "treatment": arm(self.treatment),
            "baseline": arm(self.baseline),
            **decision,
            "reading": self.claim.reading,
        }


@dataclass
class Ledger:
    """Every claim of the grids that ran, decided; how long the reproduction took."""

    entries: list[LedgerEntry]
    quick: bool
    seconds: float | None = None
    """Wall time of the ``twcore reproduce`` invocations that ran the grids."""
    invocations: int = 1
    skipped: dict[str, str] = field(default_factory=dict)
    """Grids that did not run, and why (a missing plugin)."""
    untimed: tuple[str, ...] = ()
    """Grids with runs whose invocations recorded no time (not in :attr:`seconds`)."""

    def counts(self) -> dict[str, int]:
        return {v: sum(e.decision.verdict == v for e in self.entries) for v in VERDICTS}


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


LAST_LOGGED = "last:"
"""The prefix of a claim's metric read from the runs' logs (``last:KEY``: the last value logged
under ``KEY``) rather than from their test metrics."""


def run_metric(record: RunRecord, metric: str) -> float | None:
    """`metric` of one run: a test metric from its ``summary.json``, or for ``last:KEY`` the
    last value it logged under ``KEY`` in ``metrics.jsonl`` (None where it has neither)."""
    if metric.startswith(LAST_LOGGED):
        key = metric.removeprefix(LAST_LOGGED)
        logged = next((line[key] for line in reversed(record.log) if key in line), None)
        return _finite(logged)
    return _finite(record.summary["metrics"].get("test", {}).get(metric))


def _finite(value: Any) -> float | None:
    """`value` as a float, or None where it is missing or not finite (a diverged weight)."""
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


def arm_values(
    records: Sequence[RunRecord], grid: str, arm: str, claim: Claim, metric: str = ""
) -> ArmResult:
    """`metric` (the claim's own where empty) in the runs of `arm` that match the claim's
    ``where``, one value per seed, and how many such runs did not finish (`records` holds every
    run, finished or not).

    An arm is a label of the grid (runs labelled ``GRID/ARM``) or, in a sweep without labels
    (runs labelled ``GRID``), a method name. ValueError if two finished runs share a seed
    (``where`` is too loose, or ``--out`` holds runs of another version of the grid)."""
    seeds: list[int] = []
    values: list[float] = []
    unfinished = 0
    for record in records:
        label = config_value(record.summary["config"], "label")
        if label != f"{grid}/{arm}" and not (label == grid and record.method == arm):
            continue
        if not matches(record, claim):
            continue
        value = run_metric(record, metric or claim.metric)
        if not finished(record.summary.get("status")) or value is None:
            unfinished += 1
            continue
        if record.seed in seeds:
            raise ValueError(
                f"'{arm}' has two runs with seed {record.seed} for the claim '{claim.text}': "
                "narrow its `where` to one run per seed, or reproduce into a fresh --out"
            )
        seeds.append(record.seed)
        values.append(float(value))
    order = sorted(range(len(seeds)), key=seeds.__getitem__)
    return ArmResult(
        arm, tuple(seeds[i] for i in order), tuple(values[i] for i in order), unfinished
    )


def matches(record: RunRecord, claim: Claim) -> bool:
    """Whether the run has every setting of the claim's ``where``, compared as values
    (``3000`` matches ``"3000"``, ``1e-3`` matches ``0.001``, ``True`` matches ``"true"``)."""
    return all(
        same_value(_setting(record, key), as_value(value)) for key, value in claim.where.items()
    )


def same_value(first: str, second: str) -> bool:
    """Whether two settings, as text, are the same value (numbers and booleans by value)."""
    if first == second:
        return True
    if first.lower() in ("true", "false"):
        return first.lower() == second.lower()
    try:
        return float(first) == float(second)
    except ValueError:
        return False


def _setting(record: RunRecord, key: str) -> str:
    return record.swept[key] if key in record.swept else config_value(record.summary["config"], key)


def metric_direction(records: Sequence[RunRecord], metric: str) -> str:
    """The direction (``max``/``min``) the runs' task declares for `metric` ("" if none)."""
    for record in records:
        task = record.summary.get("task", {})
        declared = (task.get("metric_directions") or {}).get(metric)
        if declared in ("max", "min"):
            return str(declared)
        if metric == task.get("primary_metric") and task.get("primary_mode") in ("max", "min"):
            return str(task["primary_mode"])
    return ""


def grid_entries(grid: ReproductionGrid, records: Sequence[RunRecord]) -> list[LedgerEntry]:
    """Every claim of `grid` decided from `records` (every run of its directory)."""
    entries = []
    for claim in grid.claims:
        where = ", ".join(f"{k}={as_value(v)}" for k, v in claim.where.items())
        where = f" with {where}" if where else ""
        try:
            treatment = arm_values(records, grid.name, claim.treatment, claim)
            baseline = arm_values(records, grid.name, claim.baseline, claim, claim.compared_metric)
        except ValueError as error:
            entries.append(_not_run(grid, claim, str(error)))
            continue
        finished_runs = [r for r in records if finished(r.summary.get("status"))]
        declared = metric_direction([r for r in finished_runs if matches(r, claim)], claim.metric)
        direction = claim.direction or declared
        if claim.direction and declared and claim.direction != declared:
            reason = (
                f"the claim's direction {claim.direction} contradicts the task's {declared} for "
                f"{claim.metric}"
            )
            entries.append(_entry(grid, claim, declared, treatment, baseline, NOT_RUN, reason))
            continue
        if not treatment.n or not baseline.n:
            missing = claim.treatment if not treatment.n else claim.baseline
            metric = claim.metric if not treatment.n else claim.compared_metric
            reason = f"no finished run of '{missing}'{where} reports {metric}"
            entries.append(_entry(grid, claim, direction, treatment, baseline, NOT_RUN, reason))
            continue
        if not direction:
            reason = (
                f"the task declares no direction for {claim.metric}; give the claim a direction"
            )
            entries.append(_entry(grid, claim, direction, treatment, baseline, NOT_RUN, reason))
            continue
        decision = decide(treatment, baseline, direction=direction, margin=claim.margin)
        decision = discount_unfinished(decision, treatment, baseline)
        entries.append(
            LedgerEntry(grid.paper, grid.name, claim, direction, treatment, baseline, decision)
        )
    return entries


def _not_run(grid: ReproductionGrid, claim: Claim, reason: str) -> LedgerEntry:
    """A claim that was not decided, with no value in either arm."""
    treatment, baseline = ArmResult(claim.treatment, (), ()), ArmResult(claim.baseline, (), ())
    return _entry(grid, claim, "", treatment, baseline, NOT_RUN, reason)


def _entry(
    grid: ReproductionGrid,
    claim: Claim,
    direction: str,
    treatment: ArmResult,
    baseline: ArmResult,
    verdict: str,
    reason: str,
) -> LedgerEntry:
    decision = Decision(verdict, reason=reason)
    return LedgerEntry(grid.paper, grid.name, claim, direction, treatment, baseline, decision)


def discount_unfinished(decision: Decision, treatment: ArmResult, baseline: ArmResult) -> Decision:
    """A verdict in favour of an arm some of whose runs did not finish becomes inconclusive:
    the finished seeds alone would flatter it."""
    flattered = {HOLDS: treatment, DOES_NOT_HOLD: baseline}.get(decision.verdict)
    if flattered is None or not flattered.unfinished:
        return decision
    reason = (
        f"{flattered.unfinished} run(s) of '{flattered.label}' did not finish (diverged or "
        f"failed); on the finished seeds alone it would be '{decision.verdict}'"
    )
    return replace(decision, verdict=INCONCLUSIVE, seeds_to_decide=None, reason=reason)


def compute_ledger(
    grids: Sequence[ReproductionGrid],
    out_dir: str | Path,
    *,
    quick: bool,
    seconds: float | None = None,
    invocations: int = 1,
    skipped: dict[str, str] | None = None,
    untimed: Sequence[str] = (),
) -> Ledger:
    """The ledger of `grids` from the runs under ``out_dir/GRID/`` (where ``twcore reproduce``
    puts them); the claims of a grid without runs there, or skipped, are "not run". `untimed`:
    the grids whose runs' time `seconds` leaves out (no invocation recorded it)."""
    entries: list[LedgerEntry] = []
    skipped = dict(skipped or {})
    for grid in grids:
        if grid.name in skipped:
            entries += [_not_run(grid, claim, skipped[grid.name]) for claim in grid.claims]
            continue
        directory = Path(out_dir) / grid.name
        if not directory.is_dir():
            reason = f"the grid was not run into {out_dir}"
            entries += [_not_run(grid, claim, reason) for claim in grid.claims]
            continue
        records: list[RunRecord] = []
        for sweep_dir in sorted(directory.glob("sweep-*")):
            records.extend(read_runs(sweep_dir, completed=False))
        entries.extend(grid_entries(grid, records))
    return Ledger(
        entries,
        quick=quick,
        seconds=seconds,
        invocations=invocations,
        skipped=skipped,
        untimed=tuple(untimed),
    )


LEDGER_MARKDOWN, LEDGER_JSON = "CLAIMS.md", "claims.json"


def write_ledger(ledger: Ledger, out_dir: str | Path) -> Path:
    """Write ``CLAIMS.md`` and ``claims.json`` into `out_dir`; the markdown file's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "quick": ledger.quick,
        "seconds": ledger.seconds,
        "invocations": ledger.invocations,
        "untimed": list(ledger.untimed),
        "alpha": ALPHA,
        "counts": ledger.counts(),
        "skipped": ledger.skipped,
        "claims": [entry.as_dict() for entry in ledger.entries],
    }
    atomic_write_text(out / LEDGER_JSON, json.dumps(document, indent=2) + "\n")
    path = out / LEDGER_MARKDOWN
    atomic_write_text(path, ledger_markdown(ledger))
    return path


def _number(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else "–"


def _arm_text(arm: ArmResult) -> str:
    failed = f", {arm.unfinished} did not finish" if arm.unfinished else ""
    if not arm.n:
        return f"–{' (' + failed[2:] + ')' if failed else ''}"
    spread = f" ± {_number(arm.std)}" if arm.n > 1 else ""
    return f"{_number(arm.mean)}{spread} (n={arm.n}{failed})"


def _verdict_text(decision: Decision) -> str:
    text = f"**{decision.verdict}**"
    if decision.reason:
        return f"{text}: {decision.reason}"
    if decision.seeds_to_decide is not None:
        return f"{text} (about {decision.seeds_to_decide} seeds would decide it)"
    return text


def ledger_markdown(ledger: Ledger) -> str:
    """The ledger as markdown: a banner, the counts, one table per paper."""
    lines = ["# Claims ledger", ""]
    if ledger.quick:
        lines += [
            "> **Smoke version** (`twcore reproduce --quick`): one seed and short runs, so "
            "every tested claim is inconclusive by construction, and a claim whose comparison "
            "the quick grids leave out is *not run*. It checks that the grids run and the "
            "ledger computes; the evidence is the full `twcore reproduce`.",
            "",
        ]
    took = ""
    if ledger.seconds is not None:
        took = f" in {ledger.seconds / 60:.1f} minutes"
        if ledger.invocations > 1:
            took += f" (over {ledger.invocations} invocations)"
    if ledger.untimed:
        names = ", ".join(f"`{name}`" for name in ledger.untimed)
        took += (
            f"; the time of the runs of {names} was not recorded and is not in it"
            if ledger.seconds is not None
            else f"; no invocation recorded the time of the runs of {names}"
        )
    lines += [
        f"Computed by `twcore reproduce` from the runs{took}. "
        f"Each verdict is a one-sided t-test at α = {ALPHA} of the treatment's advantage on "
        "the test metric (in the metric's direction) against the claim's margin, paired by "
        "seed where both arms ran the same seeds (Welch's otherwise; an exact sign test where "
        "the seeds' differences do not spread at all); no correction for the number of "
        "claims. *holds*: the advantage exceeds the margin; *does not hold*: it falls short "
        "of it; *inconclusive*: neither at this number of seeds (the seeds that would decide "
        "it are a lower bound), or a verdict in favour of an arm some of whose runs did not "
        "finish.",
        "",
        "| verdict | claims |",
        "|---|---|",
    ]
    lines += [f"| {verdict} | {count} |" for verdict, count in ledger.counts().items()]
    lines.append("")
    for grid, reason in ledger.skipped.items():
        lines.append(f"- grid `{grid}` skipped: {reason}")
    if ledger.skipped:
        lines.append("")
    papers: dict[str, list[LedgerEntry]] = {}
    for entry in ledger.entries:
        papers.setdefault(entry.paper or "(no paper named)", []).append(entry)
    for paper, entries in papers.items():
        lines += [
            f"## {paper}",
            "",
            "| claim | grid | metric | treatment | baseline | advantage (90% CI) | paper "
            "| test | verdict |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for e in entries:
            where = ", ".join(f"{k}={v}" for k, v in e.claim.where.items())
            metric = e.claim.metric
            if e.claim.compared_metric != metric:
                metric += f" vs {e.claim.compared_metric}"
            metric = f"{metric} ({e.metric_direction or '?'})"
            margin = f"; margin {e.claim.margin:g}" if e.claim.margin else ""
            low, high = e.decision.interval
            advantage = (
                f"{_number(e.decision.effect)} [{_number(low)}, {_number(high)}]"
                if math.isfinite(low)
                else _number(e.decision.effect)
            )
            lines.append(
                f"| {e.claim.text} | `{e.grid}`{' (' + where + ')' if where else ''} | "
                f"{metric}{margin} | {e.claim.treatment}: {_arm_text(e.treatment)} | "
                f"{e.claim.baseline}: {_arm_text(e.baseline)} | {advantage} | "
                f"{e.claim.paper or '–'} | {e.decision.test or '–'} | "
                f"{_verdict_text(e.decision)} |"
            )
        lines.append("")
        if not ledger.quick:  # the readings are of the full runs' verdicts
            lines += _readings(entries)
    return "\n".join(lines)


UNREAD = "no reading written yet (the grid's claim gives none)"
"""What the ledger says of a claim that does not hold and has no reading."""


def _readings(entries: Sequence[LedgerEntry]) -> list[str]:
    """The readings of the claims that do not hold or stay inconclusive (a claim that does not
    hold without one is named as unread), as a markdown list under the paper's table."""
    items = []
    for entry in entries:
        verdict = entry.decision.verdict
        if verdict not in (DOES_NOT_HOLD, INCONCLUSIVE):
            continue
        reading = entry.claim.reading or (UNREAD if verdict == DOES_NOT_HOLD else "")
        if reading:
            items.append(f"- *{entry.claim.text}* ({verdict}): {reading}")
    if not items:
        return []
    return ["Readings of the claims that do not hold or are undecided:", "", *items, ""]
