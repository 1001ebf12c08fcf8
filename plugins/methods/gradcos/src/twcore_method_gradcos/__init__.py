"""GradCos (Du, Czarnecki, Jayakumar, Farajtabar, Pascanu, Lakshminarayanan): use an auxiliary
loss only as far as its gradient agrees with the main task's.

:class:`GradCos` is the rule for any training loop; :class:`GradCosMethod` its engine adapter
(the ``gradcos`` plugin)."""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_method_gradcos.method import GradCosConfig, GradCosMethod
    from twcore_method_gradcos.rule import GradCos, combine_shared_gradients

__all__ = ["GradCos", "GradCosConfig", "GradCosMethod", "combine_shared_gradients"]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
