"""Errors that twcore reports to users.

`UsageError` and its subclasses mean *the input was wrong*: a bad key, value, plugin name or
pairing. The CLI prints them as one line on stderr and exits with code 2, without a traceback
(unless `--debug`). Anything else is a bug or a runtime failure and is reported differently.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TwcoreError(Exception):
    """Base class of every error twcore raises on purpose (exit code 1 unless a subclass says
    otherwise)."""

    exit_code = 1


class UsageError(TwcoreError):
    """The user asked for something invalid; exit code 2, one line, no traceback."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration key or value is invalid."""


class UnknownPluginError(UsageError):
    """A plugin name that no installed plugin registers."""


class DuplicatePluginError(UsageError):
    """Two distributions register the same plugin name."""


class BrokenPluginError(UsageError):
    """A plugin registered its class by import path and that path does not import, or does not
    name a plugin class (the installation needs fixing; the message says which plugin)."""


class IncompatiblePairingError(UsageError):
    """A method cannot run on a task: the task lacks something the method needs."""


class RunDirectoryError(UsageError):
    """A run directory cannot be used (already holds a run, or holds none to resume)."""


class DivergenceError(TwcoreError):
    """Training produced a non-finite objective; the run stops, keeping its last good checkpoint."""

    def __init__(self, message: str, *, step: int, objectives: list[str]) -> None:
        super().__init__(message)
        self.step = step
        self.objectives = objectives


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate most similar to `word`, if any is similar enough to be a likely typo."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, candidates: Iterable[str], prefix: str = "") -> str:
    """Return " (did you mean 'PREFIXx'?)" for the closest candidate to `word`, or ""."""
    match = closest(word, candidates)
    return f" (did you mean '{prefix}{match}'?)" if match else ""


def format_choices(candidates: Iterable[str]) -> str:
    """Comma-separated sorted list of names, or "none" when empty."""
    names = sorted(candidates)
    return ", ".join(names) if names else "none"


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name if it has none): a
    library's several-paragraph text stays out of one-line error messages."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
