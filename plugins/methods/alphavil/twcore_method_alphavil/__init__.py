"""αVIL (Kourdis, Gordon-Hall, Gorinski): task weights from task-specific parameter updates."""

from twcore_method_alphavil.method import AlphaVIL, AlphaVILConfig

__all__ = ["AlphaVIL", "AlphaVILConfig"]
