"""Your data as a task in a few lines: arrays, tensors or a ``torch.utils.data.Dataset``, with
named objectives, become a :class:`~twcore.contract.task.TensorTask` that every compatible method
runs on.

::

    from sklearn.datasets import load_digits
    from twcore.contract import task_from_arrays

    digits = load_digits()
    Digits = task_from_arrays(
        digits.data / 16,
        {"digit": digits.target, "parity": digits.target % 2},
        objectives={"digit": "classification", "parity": "classification"},
        main="digit",                      # the others become auxiliaries
        val=0.2, test=0.2,                 # fractions of the data, or (inputs, targets) pairs
    )
    twcore.register("task", "my-digits", Digits)

:func:`task_from_arrays` returns a task *class* (the registry builds one per run); its data is
held in memory, converted once (float32 inputs and regression targets, int64 class labels).
Each objective gets a head of its own named after it unless :class:`Objective` says otherwise;
class counts and output sizes are read from the targets. A ``decision`` layer (an object with
``head``, ``decide(predictions, batch)`` and ``objective(decisions, batch)``, see
:class:`~twcore.contract.task.DecisionLayer`) gives the task the ``decision`` capability, and its
evaluation reports ``objective``, the mean true objective of the decisions made from the
model's predictions (its primary metric). A layer that also solves exactly (a
:class:`~twcore.contract.decision.SolverDecisionLayer`: ``layout``, ``linear``, ``values``,
``true_values``, ``solve``) gives the ``decision-solver`` capability (and ``linear-decision``
where its objective is yᵀz), its exact decisions are the ones evaluated, and evaluation adds
``regret`` and ``normalised_regret``. Per-example tensors the layer needs (costs, constraints)
go in `context`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.utils.data import Dataset

from twcore.contract.batch import Batch
from twcore.contract.decision import (
    DECISION_METRICS,
    NORMALISED_REGRET,
    OBJECTIVE,
    REGRET,
    SolverDecisionLayer,
    check_true_decisions,
    decision_capabilities,
    true_decisions,
)
from twcore.contract.metrics import Direction
from twcore.contract.spec import (
    Capability,
    HeadSpec,
    ObjectiveKind,
    ObjectiveSpec,
    Role,
    TaskSpec,
)
from twcore.contract.task import DecisionLayer, TensorTask

ArrayLike = Any
"""A numpy array, a torch tensor, or anything ``numpy.asarray`` accepts."""

Split = (
    tuple[ArrayLike, Mapping[str, ArrayLike]]
    | tuple[ArrayLike, Mapping[str, ArrayLike], Mapping[str, ArrayLike]]
)
"""A split given explicitly: (inputs, targets) or (inputs, targets, context)."""


@dataclass(frozen=True)
class Objective:
    """One objective of a task built from arrays.

    Attributes:
        kind: ``classification`` (cross-entropy, integer labels), ``regression`` (squared
            error) — see :class:`~twcore.contract.spec.ObjectiveKind`.
        role: ``main``, ``auxiliary`` or ``peer`` (:class:`~twcore.contract.spec.Role`);
            default: ``auxiliary`` when the task has a main objective, else ``peer``.
        head: the model head it is computed from (default: a head named after the objective;
            objectives may share a head).
        size: classes or outputs of its head (default: read from the targets).
    """

    kind: ObjectiveKind | str = ObjectiveKind.CLASSIFICATION
    role: Role | str | None = None
    head: str | None = None
    size: int | None = None


def task_from_arrays(
    inputs: ArrayLike,
    targets: Mapping[str, ArrayLike],
    *,
    objectives: Mapping[str, ObjectiveKind | str | Objective],
    main: str | None = None,
    val: float | Split | None = 0.2,
    test: float | Split = 0.2,
    context: Mapping[str, ArrayLike] | None = None,
    decision: DecisionLayer | None = None,
    split_seed: int = 0,
    primary_metric: tuple[str, str] | None = None,
    name: str = "ArrayTask",
) -> type[TensorTask]:
    """A task class over in-memory data (see the module docstring).

    Args:
        inputs: [N, *input_shape] training examples (or all examples, when `val`/`test` are
            fractions).
        targets: {target name: [N] labels or [N, *shape] values}, one per objective (named as
            the objective).
        objectives: {name: kind or :class:`Objective`}, in the order methods see them.
        main: the main objective; every other objective not given a role becomes ``auxiliary``
            (default: no main objective, every objective a ``peer``).
        val: the validation split: a fraction of the data, an explicit split, or None (then
            methods that meta-learn on validation data refuse the task).
        test: the test split: a fraction of the data or an explicit split.
        context: {name: [N, ...]} other per-example tensors (a decision layer's data).
        decision: a decision layer on one head (see the module docstring).
        split_seed: the seed of the random split into fractions (the same split for every run).
        primary_metric: (metric, ``max`` or ``min``), the metric runs are compared and
            model-selected on (default: the main objective's accuracy or mse, else the average
            accuracy or loss; ``objective`` for a decision task).
        name: the returned class's name (shown in errors and reprs).

    Raises:
        ValueError: naming the bad argument (mismatched lengths, unknown objective or target,
            fractions that leave no training data, ...).
    """
    data = Batch(inputs=_as_inputs(inputs), targets={}, context=_as_context(context or {}))
    if test is None:
        raise ValueError(
            "test=None: every task needs a test split (a fraction, or (inputs, targets))"
        )
    if decision is not None and not isinstance(decision, DecisionLayer):
        raise ValueError(
            f"decision={decision!r} is not a decision layer: it needs a 'head' attribute and "
            "'decide(predictions, batch)' and 'objective(decisions, batch)' methods"
        )
    resolved = _resolve_objectives(objectives, main)
    data.targets = _as_targets(targets, resolved, "targets")
    _check_lengths(data, "inputs")
    splits = _split(data, val, test, resolved, split_seed)
    if isinstance(decision, SolverDecisionLayer):
        for split, batch in splits.items():
            first = batch.index(slice(0, _CHECKED_OPTIMA))
            check_true_decisions(decision, first, f"{split} context")
    spec = _spec(splits, resolved, decision, primary_metric)
    return _task_class(name, spec, splits, decision)


_CHECKED_OPTIMA = 8
"""How many instances of each split's stored true decisions are checked against the solver."""


def task_from_dataset(
    dataset: Dataset[Any],
    *,
    objectives: Mapping[str, ObjectiveKind | str | Objective],
    target_names: Sequence[str] | None = None,
    **options: Any,
) -> type[TensorTask]:
    """:func:`task_from_arrays` over a ``torch.utils.data.Dataset`` whose items are
    ``(input, target)``, ``(input, (target, ...))`` or ``(input, {name: target})``; the
    dataset is read once into memory (``len`` and integer indexing are all it needs).

    Args:
        dataset: the examples.
        objectives: as in :func:`task_from_arrays`.
        target_names: names of positional targets (default: the objectives' names, in order).
        **options: the other arguments of :func:`task_from_arrays`.
    """
    names = list(target_names or objectives)
    inputs: list[Tensor] = []
    targets: dict[str, list[Tensor]] = {n: [] for n in names}
    for index in range(len(dataset)):  # type: ignore[arg-type]
        item = dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(
                f"dataset item {index} is {type(item).__name__}; expected (input, target), "
                "(input, (targets...)) or (input, {name: target})"
            )
        example, target = item
        inputs.append(_tensor(example))
        values = _named_targets(target, names, index)
        for key in names:
            targets[key].append(_tensor(values[key]))
    if not inputs:
        raise ValueError("the dataset is empty")
    stacked = {key: torch.stack(values) for key, values in targets.items()}
    return task_from_arrays(torch.stack(inputs), stacked, objectives=objectives, **options)


def _named_targets(target: Any, names: Sequence[str], index: int) -> Mapping[str, Any]:
    if isinstance(target, Mapping):
        missing = [n for n in names if n not in target]
        if missing:
            raise ValueError(f"dataset item {index} has no target {missing[0]!r}")
        return target
    values = list(target) if isinstance(target, (tuple, list)) else [target]
    if len(values) != len(names):
        raise ValueError(
            f"dataset item {index} has {len(values)} target(s); target_names has {len(names)}"
        )
    return dict(zip(names, values, strict=True))


def _tensor(value: ArrayLike) -> Tensor:
    """`value` as a tensor: tensors as they are, arrays and lists without a copy where
    possible, anything else through ``numpy.asarray`` (a pandas column, say)."""
    if isinstance(value, Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        import numpy

        return torch.as_tensor(numpy.asarray(value))


def _as_context(context: Mapping[str, ArrayLike]) -> dict[str, Tensor]:
    """Per-example tensors, detached (a task's data has no graph); floating ones in float32."""
    converted = {}
    for name, value in context.items():
        tensor = _tensor(value).detach()
        converted[name] = tensor.to(torch.float32) if tensor.is_floating_point() else tensor
    return converted


def _as_inputs(inputs: ArrayLike) -> Tensor:
    tensor = _tensor(inputs)
    if tensor.dim() < 2:
        raise ValueError(f"inputs must be [N, *input_shape], got shape {tuple(tensor.shape)}")
    return tensor.detach().to(torch.float32)


def _resolve_objectives(
    objectives: Mapping[str, ObjectiveKind | str | Objective], main: str | None
) -> dict[str, Objective]:
    if not objectives:
        raise ValueError("objectives is empty; name at least one, e.g. {'label': 'classification'}")
    if main is not None and main not in objectives:
        raise ValueError(f"main={main!r} is not one of the objectives {sorted(objectives)}")
    resolved: dict[str, Objective] = {}
    for name, given in objectives.items():
        objective = given if isinstance(given, Objective) else Objective(kind=given)
        kind = _choice(ObjectiveKind, objective.kind, f"objective {name!r} kind", LEARNABLE)
        if objective.role is not None:
            role = _choice(Role, objective.role, f"objective {name!r} role", list(Role))
        else:
            role = Role.PEER if main is None else Role.AUXILIARY
        if name == main:
            role = Role.MAIN
        resolved[name] = Objective(kind, role, objective.head or name, objective.size)
    return resolved


LEARNABLE = [ObjectiveKind.CLASSIFICATION, ObjectiveKind.REGRESSION]
"""The objective kinds a task from arrays computes its loss for (``custom`` needs a task class
of its own, :meth:`~twcore.contract.task.TensorTask.custom_loss`)."""


def _choice(enum: Any, value: Any, what: str, allowed: Sequence[Any]) -> Any:
    choices = ", ".join(str(member.value) for member in allowed)
    try:
        member = enum(value)
    except ValueError:
        member = None
    if member not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {choices}") from None
    return member


def _as_targets(
    targets: Mapping[str, ArrayLike], objectives: Mapping[str, Objective], where: str
) -> dict[str, Tensor]:
    missing = [name for name in objectives if name not in targets]
    if missing:
        raise ValueError(
            f"{where} has no {missing[0]!r}; it needs one target per objective, named as the "
            f"objective ({', '.join(objectives)})"
        )
    converted = {}
    for name, objective in objectives.items():
        value = targets[name]
        tensor = _tensor(value)
        if objective.kind is ObjectiveKind.CLASSIFICATION:
            if tensor.dim() != 1 or (tensor.is_floating_point() and not _whole(tensor)):
                raise ValueError(
                    f"{where}[{name!r}]: a classification target is [N] integer class labels, "
                    f"got {tensor.dtype} of shape {tuple(tensor.shape)}"
                )
            tensor = tensor.to(torch.int64)
            if tensor.numel() and int(tensor.min()) < 0:
                raise ValueError(f"{where}[{name!r}]: class labels must be 0 or more")
        else:
            tensor = tensor.to(torch.float32)
            tensor = tensor.unsqueeze(1) if tensor.dim() == 1 else tensor
        converted[name] = tensor.detach()
    return converted


def _whole(tensor: Tensor) -> bool:
    return bool(torch.equal(tensor, tensor.round()))


def _check_lengths(batch: Batch, where: str) -> None:
    try:
        batch.validate()
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _split(
    data: Batch,
    val: float | Split | None,
    test: float | Split,
    objectives: Mapping[str, Objective],
    seed: int,
) -> dict[str, Batch]:
    """train/val/test: explicit splits as given, fractions cut from a seeded permutation."""
    fractions = {
        name: value
        for name, value in (("val", val), ("test", test))
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    for name, fraction in fractions.items():
        if not 0 < fraction < 1:
            raise ValueError(f"{name}={fraction}: a fraction must be in (0, 1)")
    total = len(data)
    counts = {name: round(fraction * total) for name, fraction in fractions.items()}
    if any(count == 0 for count in counts.values()) or sum(counts.values()) >= total:
        raise ValueError(
            f"val/test fractions {fractions} of {total} examples leave an empty split; give "
            "smaller fractions or more data"
        )
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    splits: dict[str, Batch] = {}
    start = 0
    for name, count in counts.items():
        splits[name] = data.index(order[start : start + count])
        start += count
    splits["train"] = data.index(order[start:])
    for name, value in (("val", val), ("test", test)):
        if isinstance(value, tuple):
            splits[name] = _explicit_split(value, objectives, name, data)
        elif value is not None and name not in splits:
            raise ValueError(f"{name}={value!r}: give a fraction or (inputs, targets)")
    return {name: splits[name] for name in ("train", "val", "test") if name in splits}


def _explicit_split(
    split: Split, objectives: Mapping[str, Objective], name: str, like: Batch
) -> Batch:
    if len(split) not in (2, 3):
        raise ValueError(f"{name}: give (inputs, targets) or (inputs, targets, context)")
    inputs, targets = split[0], split[1]
    context = split[2] if len(split) == 3 else {}
    batch = Batch(
        inputs=_as_inputs(inputs),
        targets=_as_targets(targets, objectives, f"{name} targets"),
        context=_as_context(context),
    )
    if batch.inputs.shape[1:] != like.inputs.shape[1:]:
        raise ValueError(
            f"{name} inputs have shape {tuple(batch.inputs.shape[1:])} per example, the "
            f"training data {tuple(like.inputs.shape[1:])}"
        )
    if set(batch.context) != set(like.context):
        raise ValueError(
            f"{name} context has {sorted(batch.context)}, needs {sorted(like.context)}"
        )
    _check_lengths(batch, name)
    return batch


def _spec(
    splits: Mapping[str, Batch],
    objectives: Mapping[str, Objective],
    decision: DecisionLayer | None,
    primary_metric: tuple[str, str] | None,
) -> TaskSpec:
    heads: dict[str, int] = {}
    for name, objective in objectives.items():
        found = _size(objective, [s.targets[name] for s in splits.values()])
        if objective.size is not None and objective.size < found:
            unit = "classes (labels up to" if _is_classification(objective) else "outputs ("
            raise ValueError(
                f"objective {name!r} has size={objective.size}, but its targets need {found} "
                f"{unit} {found - 1 if _is_classification(objective) else 'the target width'})"
            )
        size = objective.size or found
        head = objective.head or name
        if heads.setdefault(head, size) != size:
            raise ValueError(f"objectives sharing head {head!r} need the same size")
    capabilities: set[str] = {Capability.VALIDATION} if "val" in splits else set()
    if decision is not None:
        if decision.head not in heads:
            raise ValueError(
                f"decision layer's head {decision.head!r} is not a head of the objectives "
                f"({', '.join(heads)})"
            )
        capabilities |= decision_capabilities(decision)
    specs = tuple(
        ObjectiveSpec(
            name, head=o.head or name, kind=ObjectiveKind(o.kind), role=Role(o.role or Role.PEER)
        )
        for name, o in objectives.items()
    )
    primary, mode = _primary(specs, decision is not None, primary_metric)
    return TaskSpec(
        input_shape=tuple(splits["train"].inputs.shape[1:]),
        heads=tuple(HeadSpec(head, size) for head, size in heads.items()),
        objectives=specs,
        capabilities=frozenset(capabilities),
        primary_metric=primary,
        primary_mode=mode,
        summary_metrics=tuple(dict.fromkeys((primary, "avg_loss"))),
    )


def _is_classification(objective: Objective) -> bool:
    return objective.kind is ObjectiveKind.CLASSIFICATION


def _size(objective: Objective, targets: Sequence[Tensor]) -> int:
    if objective.kind is ObjectiveKind.CLASSIFICATION:
        return max(int(t.max()) for t in targets if t.numel()) + 1
    return math.prod(targets[0].shape[1:])


def _primary(
    objectives: Sequence[ObjectiveSpec], decision: bool, given: tuple[str, str] | None
) -> tuple[str, str]:
    if given is not None:
        metric, mode = given
        if mode not in ("max", "min"):
            raise ValueError(f"primary_metric={given!r}: its mode is 'max' or 'min'")
        return metric, mode
    if decision:
        return "objective", "max"
    main = next((o for o in objectives if o.role is Role.MAIN), None)
    if main is not None:
        classification = main.kind is ObjectiveKind.CLASSIFICATION
        return ("main_acc", "max") if classification else ("main_mse", "min")
    if all(o.kind is ObjectiveKind.CLASSIFICATION for o in objectives):
        return "avg_acc", "max"
    return "avg_loss", "min"


def _task_class(
    name: str, spec: TaskSpec, splits: dict[str, Batch], decision: DecisionLayer | None
) -> type[TensorTask]:
    attributes: dict[str, Any] = {
        "__doc__": f"A task over in-memory data ({', '.join(spec.objective_names)}).",
        "_spec": spec,
        "_data": splits,
        "__module__": __name__,
    }
    base = DecisionArrayTask if decision is not None else ArrayTask
    if decision is not None:
        attributes["decision"] = decision
    return type(name, (base,), attributes)


class ArrayTask(TensorTask):
    """The base of the classes :func:`task_from_arrays` returns: its spec and splits are the
    class's (``_spec``, ``_data``), shared by every run in the process (read-only)."""

    _spec: ClassVar[TaskSpec]
    _data: ClassVar[dict[str, Batch]]

    def build_spec(self) -> TaskSpec:
        return self._spec

    def build_splits(self) -> dict[str, Batch]:
        return dict(self._data)


class DecisionArrayTask(ArrayTask):
    """An :class:`ArrayTask` with a decision layer: evaluation adds ``objective``, the mean
    true objective of the layer's decisions from the model's predictions (its exact ones, for a
    :class:`~twcore.contract.decision.SolverDecisionLayer`, which also gives ``regret`` and
    ``normalised_regret``)."""

    @property
    def metric_directions(self) -> Mapping[str, Direction] | None:
        """The supervised metrics and the decision metrics the layer allows (a decision
        layer's objective is higher-is-better, :class:`~twcore.contract.task.DecisionLayer`)."""
        names = [OBJECTIVE]
        if isinstance(self.decision, SolverDecisionLayer):
            names += [REGRET, NORMALISED_REGRET]
        return {**(super().metric_directions or {}), **{n: DECISION_METRICS[n] for n in names}}

    @torch.no_grad()
    def evaluate(
        self, model: torch.nn.Module, split: str, *, device: torch.device, batch_size: int
    ) -> dict[str, float]:
        metrics = super().evaluate(model, split, device=device, batch_size=batch_size)
        layer = self.decision
        assert layer is not None
        data = self.split(split)
        chosen, best = [], []
        was_training = model.training
        model.eval()
        try:
            for start in range(0, len(data), batch_size):
                chunk = data.index(slice(start, start + batch_size)).to(device)
                predictions = model(chunk.inputs)[layer.head]
                if isinstance(layer, SolverDecisionLayer):
                    decisions = layer.solve(layer.values(predictions), chunk)
                    optimal = true_decisions(layer, chunk)
                    best.append(layer.objective(optimal, chunk).double())
                else:
                    decisions = layer.decide(predictions, chunk)
                chosen.append(layer.objective(decisions, chunk).double())
        finally:
            model.train(was_training)
        objective = torch.cat(chosen)
        metrics[OBJECTIVE] = float(objective.mean())
        if best:
            optimal_objective = torch.cat(best)
            gap = optimal_objective - objective
            metrics[REGRET] = float(gap.mean())
            scale = float(optimal_objective.abs().sum())
            metrics[NORMALISED_REGRET] = float(gap.sum()) / scale if scale > 0 else math.nan
        return metrics
