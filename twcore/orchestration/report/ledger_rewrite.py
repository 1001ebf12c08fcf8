"""A written claims ledger read back from its ``claims.json`` and written again with the
installed grids' current readings (``twcore reproduce --rewrite-ledger DIR``).

A claim's reading (:attr:`twcore.contract.grids.Claim.reading`) is prose about a verdict, not
a number: editing one should not need the hours of runs that decided the verdicts. The
numbers, verdicts, tests, times and the claims' definitions are taken from the file exactly as
recorded; only each claim's reading is the one its installed grid now gives (matched by grid
name and claim text; a claim no installed grid states keeps the reading it was written with).
The markdown is the same function of the ledger as when the runs were decided, so a ledger
read back and written again is the same file, readings aside.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from twcore.contract.errors import ConfigError
from twcore.contract.grids import Claim, ReproductionGrid
from twcore.orchestration.report.ledger import (
    ALPHA,
    LEDGER_JSON,
    ArmResult,
    Decision,
    Ledger,
    LedgerEntry,
    write_ledger,
)


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _arm(recorded: Mapping[str, Any]) -> ArmResult:
    return ArmResult(
        str(recorded["label"]),
        tuple(int(seed) for seed in recorded["seeds"]),
        tuple(float(value) for value in recorded["values"]),
        int(recorded["unfinished"]),
    )


def _entry(recorded: Mapping[str, Any], installed: Mapping[tuple[str, str], Claim]) -> LedgerEntry:
    """One recorded claim, its reading the installed grid's where the grid states it."""
    treatment, baseline = _arm(recorded["treatment"]), _arm(recorded["baseline"])
    metric = str(recorded["metric"])
    compared = str(recorded.get("baseline_metric") or metric)
    key = (str(recorded["grid"]), str(recorded["claim"]))
    stated = installed.get(key)
    claim = Claim(
        key[1],
        metric,
        treatment.label,
        baseline.label,
        where=dict(recorded.get("where") or {}),
        margin=float(recorded.get("margin", 0.0)),
        paper=str(recorded.get("paper_numbers", "")),
        baseline_metric=compared if compared != metric else "",
        reading=stated.reading if stated else str(recorded.get("reading", "")),
    )
    low, high = recorded.get("interval") or (None, None)
    decision = Decision(
        str(recorded["verdict"]),
        effect=_number(recorded.get("effect")),
        interval=(_number(low), _number(high)),
        p_value=_number(recorded.get("p_value")),
        test=str(recorded.get("test", "")),
        seeds_to_decide=recorded.get("seeds_to_decide"),
        reason=str(recorded.get("reason", "")),
    )
    direction = str(recorded.get("direction", ""))
    return LedgerEntry(
        str(recorded["paper"]), key[0], claim, direction, treatment, baseline, decision
    )


def ledger_from_document(
    document: Mapping[str, Any], grids: Sequence[ReproductionGrid] = ()
) -> Ledger:
    """The ledger a ``claims.json`` `document` records, each claim's reading taken from
    `grids` where one of them states the claim (see the module docstring)."""
    installed = {(grid.name, claim.text): claim for grid in grids for claim in grid.claims}
    return Ledger(
        [_entry(recorded, installed) for recorded in document["claims"]],
        quick=bool(document["quick"]),
        seconds=document.get("seconds"),
        invocations=int(document.get("invocations", 1)),
        skipped=dict(document.get("skipped") or {}),
        untimed=tuple(document.get("untimed") or ()),
    )


def read_ledger(directory: str | Path, grids: Sequence[ReproductionGrid]) -> Ledger:
    """`directory`'s ledger from its ``claims.json``, with the readings `grids` now give.
    ConfigError (one line) if the directory holds no readable ledger, or one decided at another
    level α than this twcore's (its verdicts and text would disagree)."""
    path = Path(directory) / LEDGER_JSON
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"--rewrite-ledger: {path} does not exist; give a directory a ledger was written to"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"--rewrite-ledger: {path} is not a readable ledger ({error})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"--rewrite-ledger: {path} is not a claims ledger (not an object)")
    if document.get("alpha", ALPHA) != ALPHA:
        raise ConfigError(
            f"--rewrite-ledger: {path} was decided at α = {document['alpha']}, not this "
            f"twcore's {ALPHA}; reproduce it again"
        )
    arms = [c.get(a) for c in document.get("claims", []) for a in ("treatment", "baseline")]
    if any(isinstance(arm, dict) and "unfinished" not in arm for arm in arms):
        raise ConfigError(
            f"--rewrite-ledger: {path} was written by an older twcore, which did not record "
            "each arm's unfinished runs; decide it again from its runs (twcore reproduce "
            "--report-only)"
        )
    try:
        return ledger_from_document(document, grids)
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"--rewrite-ledger: {path} is not a claims ledger ({error})") from None


def rewrite_ledgers(
    directories: Sequence[str | Path], grids: Sequence[ReproductionGrid]
) -> list[Path]:
    """Write each directory's ``CLAIMS.md`` and ``claims.json`` again from its ``claims.json``
    with the readings `grids` now give; the markdown files' paths. Every ledger is read before
    any is written, so a bad one (ConfigError) leaves all of them as they were."""
    ledgers = [(directory, read_ledger(directory, grids)) for directory in directories]
    return [write_ledger(ledger, directory) for directory, ledger in ledgers]


def rewrite_ledger(directory: str | Path, grids: Sequence[ReproductionGrid]) -> Path:
    """:func:`rewrite_ledgers` of one directory."""
    return rewrite_ledgers([directory], grids)[0]
