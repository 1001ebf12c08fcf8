"""twcore: learned loss weighting and learned losses for PyTorch.

``twcore.run([...overrides])`` trains one run and ``twcore.resume(run_dir)`` continues one (see
:mod:`twcore.orchestration.api`). Your own data, model and plugins, without packaging::

    Digits = twcore.task_from_arrays(x, {"digit": y}, objectives={"digit": "classification"})
    twcore.register("task", "my-digits", Digits)
    twcore.run(["task=my-digits", "method=gradcos"])

(:func:`~twcore.contract.array_task.task_from_arrays`, ``task_from_dataset``,
:func:`~twcore.contract.trunk_model.model_from_trunk`, :class:`Objective`;
:func:`~twcore.orchestration.user_plugins.register` and ``import_plugins`` for plugins that
worker processes must see too). Plugin authors import :mod:`twcore.contract`, which loads none
of the orchestration.
"""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports
from twcore.version import __version__

if TYPE_CHECKING:  # the real signatures for editors and type checkers; loaded lazily below
    from twcore.contract.array_task import Objective, task_from_arrays, task_from_dataset
    from twcore.contract.callbacks import Callback
    from twcore.contract.trunk_model import model_from_trunk
    from twcore.orchestration.api import resume, run
    from twcore.orchestration.engine.trainer import RunResult
    from twcore.orchestration.user_plugins import import_plugins, register

__all__ = [
    "Callback",
    "Objective",
    "RunResult",
    "__version__",
    "import_plugins",
    "model_from_trunk",
    "register",
    "resume",
    "run",
    "task_from_arrays",
    "task_from_dataset",
]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
