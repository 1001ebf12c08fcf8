"""Lookahead-DRO (Michel, Ruder, Yogatama): weights that minimise the worst lookahead loss."""

from twcore_method_ldro.game import lookahead_matrix, online_update, solve_game_exactly
from twcore_method_ldro.method import LookaheadDRO, LookaheadDROConfig

__all__ = [
    "LookaheadDRO",
    "LookaheadDROConfig",
    "lookahead_matrix",
    "online_update",
    "solve_game_exactly",
]
