"""AdaLFL (Raymond, Chen, Xue, Zhang): online loss function learning. A small loss network
replaces the task's base loss and is meta-updated after every base step through a one-step
lookahead.

:class:`AdaLFL` is the rule for any training loop (with :class:`LearnedObjective`, and the
learned loss :class:`LearnedLoss` as an ``nn.Module``); :class:`AdaLFLMethod` its engine adapter
(the ``adalfl`` plugin)."""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_method_adalfl.loss_network import LearnedLoss, LossNetwork, SmoothLeakyReLU
    from twcore_method_adalfl.method import AdaLFLConfig, AdaLFLMethod
    from twcore_method_adalfl.rule import AdaLFL, LearnedObjective, MetaSlot

__all__ = [
    "AdaLFL",
    "AdaLFLConfig",
    "AdaLFLMethod",
    "LearnedLoss",
    "LearnedObjective",
    "LossNetwork",
    "MetaSlot",
    "SmoothLeakyReLU",
]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
