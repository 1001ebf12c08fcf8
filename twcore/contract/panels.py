"""Dashboard panels a method's runs are read with (the team workspace's method sections).

A method plugin lists them in :attr:`twcore.contract.method.Method.panels`; ``twcore report``
turns them, with the panels every run has (the primary metric, test metrics, learned weights),
into the W&B workspace definition of a sweep (``workspace.md`` and ``workspace.json``).
"""

from __future__ import annotations

from dataclasses import dataclass

PANEL_KINDS = ("line", "media", "chart", "bar")
"""``line``: a logged value over steps, runs grouped (mean with a ±1 std band); ``media``: logged
images, one per step on a slider; ``chart``: a custom chart logged as it is (a LinePlot, e.g. a
learned loss's shape); ``bar``: a summary value per group."""


@dataclass(frozen=True)
class Panel:
    """One panel of a method's workspace section.

    Attributes:
        title: the panel's title.
        keys: the logged keys it shows, as logged (``method/...``: what the method passes to
            ``ctx.log``, prefixed); a trailing ``*`` stands for every key with that prefix
            (``method/metric_diagonal/*``: one line per dimension).
        kind: one of :data:`PANEL_KINDS`.
        note: what a reader learns from the panel (one sentence).
    """

    title: str
    keys: tuple[str, ...]
    kind: str = "line"
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in PANEL_KINDS:
            raise ValueError(
                f"panel '{self.title}': kind {self.kind!r}; valid: {', '.join(PANEL_KINDS)}"
            )
        if not self.keys:
            raise ValueError(f"panel '{self.title}': give the logged keys it shows")
