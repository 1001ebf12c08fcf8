"""Atari games from ale-py (ROMs bundled) as twcore tasks."""

from twcore_task_atari.atari_aux import AtariAuxTask
from twcore_task_atari.frames import AtariFrames, bundled_games, downsample

__all__ = ["AtariAuxTask", "AtariFrames", "bundled_games", "downsample"]
