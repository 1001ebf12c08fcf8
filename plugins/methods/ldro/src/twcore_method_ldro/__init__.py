"""Lookahead-DRO (Michel, Ruder, Yogatama): weights that minimise the worst lookahead loss.

:class:`LookaheadDRO` is the rule for any training loop; :class:`LookaheadDROMethod` its engine
adapter (the ``ldro`` plugin)."""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_method_ldro.game import lookahead_matrix, online_update, solve_game_exactly
    from twcore_method_ldro.method import LookaheadDROConfig, LookaheadDROMethod
    from twcore_method_ldro.rule import LookaheadDRO

__all__ = [
    "LookaheadDRO",
    "LookaheadDROConfig",
    "LookaheadDROMethod",
    "lookahead_matrix",
    "online_update",
    "solve_game_exactly",
]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
