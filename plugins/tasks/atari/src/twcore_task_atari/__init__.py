"""Atari games from ale-py (ROMs bundled) as twcore tasks."""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_task_atari.atari_aux import AtariAuxTask
    from twcore_task_atari.frames import AtariFrames, bundled_games, downsample

__all__ = ["AtariAuxTask", "AtariFrames", "bundled_games", "downsample"]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
