"""Paper-reproduction grids: the type a plugin's ``twcore_reproduction_grids`` hook registers,
the claims a grid tests, and a helper to spell a grid's settings as sweep arguments.
``twcore reproduce`` runs the grids and computes the claims ledger from their runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PLUGIN_KEYS = ("method", "task", "model")
"""The sweep keys whose values are plugin names."""


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, as a comparison of two labelled arms of a grid on one metric.

    The claim is that `treatment` does better than `baseline` on `metric` (in the metric's
    declared direction) by more than `margin`: ``margin=0`` says "better than", a negative
    margin says "no worse than, within ``-margin``" (a non-inferiority claim). The ledger
    decides it from the runs of both arms, paired by seed where both ran the same seeds.

    A claim about what a method learned compares two metrics of the same runs: `treatment`
    and `baseline` name the same arm, `baseline_metric` the metric it is compared with, and
    `direction` says which way is better where the task declares none (a learned weight):
    ``Claim("αVIL weights the helpful auxiliary above the harmful one",
    "last:train/weight/helpful", "alphavil", "alphavil",
    baseline_metric="last:train/weight/harmful", direction="max")``.

    Attributes:
        text: the claim in one sentence.
        metric: the metric compared: a test metric (a name in the runs' ``summary.json``,
            ``main_acc``), or ``last:KEY`` for the last value a run logged under ``KEY`` in
            its ``metrics.jsonl`` (``last:train/weight/harmful``).
        treatment: the label of the runs the claim is about (``my-method``); in a grid whose
            sweeps set no label, a method name.
        baseline: the label (or method) of the runs it is compared with (``baseline``).
        where: settings both arms are narrowed to (``{"task": "my-task"}``,
            ``{"task.train_size": 300}``), compared as values (``300`` matches ``"300"``).
        margin: how much better (positive) or how much worse at most (negative) the treatment
            must be, in the metric's units.
        paper: the paper's published numbers for this comparison, as text ("" if none).
        baseline_metric: the baseline's metric where it is not `metric` ("": the same).
        direction: ``max`` or ``min``, for a metric whose task declares no direction ("": the
            task's declared direction of `metric`; a claim whose direction contradicts the
            task's is not decided, and the ledger says why).
        reading: why the claim does not hold (or stays undecided), as the plugin's
            documentation reads it: the cause in a sentence or two, and where its evidence is
            (the README section, the diagnostic script or plot, the ablation). The full
            ledger prints it under the paper's table where the verdict is *does not hold* or
            *inconclusive*, and names a claim that does not hold without one as unread (a
            ``--quick`` ledger prints none). ``twcore reproduce --rewrite-ledger DIR`` puts
            edited readings into a written ledger without running anything.
    """

    text: str
    metric: str
    treatment: str
    baseline: str
    where: Mapping[str, Any] = field(default_factory=dict)
    margin: float = 0.0
    paper: str = ""
    baseline_metric: str = ""
    direction: str = ""
    reading: str = ""

    def __post_init__(self) -> None:
        if self.direction not in ("", "max", "min"):
            raise ValueError(
                f"Claim {self.text!r}: direction={self.direction!r}; give 'max', 'min' or '' "
                "(the task's declared direction)"
            )
        if self.treatment == self.baseline and self.metric == self.compared_metric:
            raise ValueError(
                f"Claim {self.text!r} compares '{self.treatment}' with itself on {self.metric}; "
                "give another baseline arm or a baseline_metric"
            )

    @property
    def compared_metric(self) -> str:
        """The baseline arm's metric: `baseline_metric`, or `metric` where that is empty."""
        return self.baseline_metric or self.metric


@dataclass(frozen=True)
class ReproductionGrid:
    """One experiment of a paper, as sweeps, and the claims its runs test.

    Attributes:
        name: a short directory-safe name (``my-method-paper``).
        description: what the grid reproduces (the claim it tests).
        sweeps: the full experiment: each entry is one sweep's ``key=a,b`` arguments.
        quick: a small version of the same sweeps (a minute or so on 2 cores).
        paper: the paper the grid reproduces (title and authors).
        claims: the paper's claims the runs decide (:class:`Claim`; labels are the grid's own,
            without the ``GRID/`` prefix ``twcore reproduce`` adds).
    """

    name: str
    description: str
    sweeps: tuple[tuple[str, ...], ...]
    quick: tuple[tuple[str, ...], ...]
    paper: str = ""
    claims: tuple[Claim, ...] = ()

    def plugins(self) -> dict[str, tuple[str, ...]]:
        """The plugins the grid's sweeps name, by kind (``{"method": ("a", "b"), "task": ...}``),
        each name once, in order of appearance (a plugin left at its default is not named)."""
        found: dict[str, list[str]] = {kind: [] for kind in PLUGIN_KEYS}
        for arguments in (*self.sweeps, *self.quick):
            for argument in arguments:
                key, _, value = argument.partition("=")
                if key in found:
                    for name in (part.strip() for part in value.split(",")):
                        if name and name not in found[key]:
                            found[key].append(name)
        return {kind: tuple(names) for kind, names in found.items() if names}


def as_arguments(settings: dict[str, Any]) -> tuple[str, ...]:
    """``key=value`` sweep arguments from a dict (a string value with commas is swept; lists
    are written ``[a,b]``; booleans ``true``/``false``)."""
    arguments = []
    for key, value in settings.items():
        arguments.append(f"{key}={as_value(value)}")
    return tuple(arguments)


def seeds(count: int) -> str:
    """The first `count` seeds as a grid's swept ``seed`` value: ``"0,1,…,count − 1"``."""
    if count < 1:
        raise ValueError(f"seeds({count}): a grid runs at least one seed")
    return ",".join(str(seed) for seed in range(count))


def as_value(value: Any) -> str:
    """One setting's value as a sweep argument spells it (see :func:`as_arguments`)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)
