"""The plugin-author contract: everything a method, task or model plugin implements or uses.

Import from here and nothing else of twcore is loaded (torch and pluggy are the only libraries
it needs; a test checks this in a fresh interpreter)::

    from twcore.contract import Batch, Method, StepResult, hookimpl, option

- hooks: :mod:`~twcore.contract.hookspecs` (``hookimpl``, the ``twcore_*`` hook specs);
- the three roles: :class:`Method` with :class:`MethodContext` and :class:`StepResult`,
  :class:`Task` / :class:`TensorTask` (with :class:`DecisionLayer`), :class:`Model`;
- what a task says about itself and what a method needs: :class:`TaskSpec`, :class:`HeadSpec`,
  :class:`ObjectiveSpec`, :class:`Role`, :class:`ObjectiveKind`, :class:`Capability`,
  :class:`Requirements`;
- data: :class:`Batch`, :class:`BatchStream`, :class:`TensorBatchStream`, and
  :func:`cached_tensors` for prepared data; your own data and model without subclassing:
  :func:`task_from_arrays`, :func:`task_from_dataset` (with :class:`Objective`) and
  :func:`model_from_trunk`;
- losses and metrics with stable names: :mod:`~twcore.contract.losses`,
  :mod:`~twcore.contract.metrics`;
- per-step weightings, usable in any training loop: :class:`Weighting` (returning a
  :class:`WeightedStep`), :class:`LossWeighting` for rules that weight the losses
  (:class:`HeldWeights` for rules holding their weight vector),
  :func:`weighted_backward`, :class:`GramWeighting` for rules that combine the gradients from
  their Gram matrix (MGDA, PCGrad, CAGrad, ...), and the engine's adapter for them,
  :class:`WeightingMethod` (a weighting plugin implements ``build_rule`` and nothing else);
- options: :func:`option`, :class:`NoConfig`, :class:`OptimConfig` and :func:`build_optimizer`;
  a model's activation and dropout options: :func:`activation_option`,
  :func:`dropout_option`, :func:`make_activation`;
- logging values: :class:`Image`, :class:`LinePlot`;
- float16 loss scaling at the model's outputs: :class:`DynamicLossScale`;
- reproduction grids: :class:`ReproductionGrid`, the claims they test (:class:`Claim`),
  :func:`as_arguments`;
- errors a plugin may raise for bad input: :class:`ConfigError` and the others in
  :mod:`~twcore.contract.errors`.

Everything here is loaded on first use (PEP 562), so ``from twcore.contract.hookspecs import
hookimpl`` in a plugin's entry-point module costs pluggy and nothing else: a plugin that registers
its classes by import path (``register("my-method", "my_package.method:MyMethod")``) keeps
``twcore plugins`` and ``--help`` free of torch.
"""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:  # the real names for editors and type checkers; loaded lazily below
    from twcore.contract.activations import activation_option, dropout_option, make_activation
    from twcore.contract.array_task import Objective, task_from_arrays, task_from_dataset
    from twcore.contract.batch import Batch
    from twcore.contract.data_cache import cached_tensors
    from twcore.contract.errors import (
        ConfigError,
        IncompatiblePairingError,
        TwcoreError,
        UsageError,
    )
    from twcore.contract.gram_weighting import GramWeighting
    from twcore.contract.grids import Claim, ReproductionGrid, as_arguments
    from twcore.contract.hookspecs import hookimpl
    from twcore.contract.loss_scale import DynamicLossScale
    from twcore.contract.losses import (
        base_loss,
        cross_entropy_per_example,
        squared_error_per_example,
    )
    from twcore.contract.media import Image, LinePlot
    from twcore.contract.method import Logger, Method, MethodContext, StepResult
    from twcore.contract.metrics import (
        DIRECTIONS,
        Direction,
        supervised_directions_of,
        supervised_metric_directions,
        supervised_metric_names,
        supervised_metrics,
    )
    from twcore.contract.model import Model, flat_input_size, parameters_shared_by_objectives
    from twcore.contract.optim import OptimConfig, build_optimizer
    from twcore.contract.options import NoConfig, option
    from twcore.contract.panels import PANEL_KINDS, Panel
    from twcore.contract.spec import (
        Capability,
        HeadSpec,
        ObjectiveKind,
        ObjectiveSpec,
        Requirements,
        Role,
        TaskSpec,
        single_objective_spec,
    )
    from twcore.contract.stream import BatchStream, TensorBatchStream
    from twcore.contract.task import DecisionLayer, Task, TensorTask, stack_objective_losses
    from twcore.contract.trunk_model import model_from_trunk
    from twcore.contract.weighting import (
        HeldWeights,
        LossWeighting,
        WeightedStep,
        Weighting,
        weighted_backward,
    )
    from twcore.contract.weighting_method import WeightingMethod, name_objectives, shared_parameters

__all__ = [
    "DIRECTIONS",
    "PANEL_KINDS",
    "Batch",
    "BatchStream",
    "Capability",
    "Claim",
    "ConfigError",
    "DecisionLayer",
    "Direction",
    "DynamicLossScale",
    "GramWeighting",
    "HeadSpec",
    "HeldWeights",
    "Image",
    "IncompatiblePairingError",
    "LinePlot",
    "Logger",
    "LossWeighting",
    "Method",
    "MethodContext",
    "Model",
    "NoConfig",
    "Objective",
    "ObjectiveKind",
    "ObjectiveSpec",
    "OptimConfig",
    "Panel",
    "ReproductionGrid",
    "Requirements",
    "Role",
    "StepResult",
    "Task",
    "TaskSpec",
    "TensorBatchStream",
    "TensorTask",
    "TwcoreError",
    "UsageError",
    "WeightedStep",
    "Weighting",
    "WeightingMethod",
    "activation_option",
    "as_arguments",
    "base_loss",
    "build_optimizer",
    "cached_tensors",
    "cross_entropy_per_example",
    "dropout_option",
    "flat_input_size",
    "hookimpl",
    "make_activation",
    "model_from_trunk",
    "name_objectives",
    "option",
    "parameters_shared_by_objectives",
    "shared_parameters",
    "single_objective_spec",
    "squared_error_per_example",
    "stack_objective_losses",
    "supervised_directions_of",
    "supervised_metric_directions",
    "supervised_metric_names",
    "supervised_metrics",
    "task_from_arrays",
    "task_from_dataset",
    "weighted_backward",
]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
