"""What a task says about itself, and what a method needs from a task.

A task describes itself with a :class:`TaskSpec`: the input shape, named output heads, named
objectives (each a per-example loss on one head, with a role) and optional capabilities.
Models are built from the spec; methods declare :class:`Requirements` that the registry checks
against the spec before training starts (see :mod:`twcore.contract.pairing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from torch import nn

_MODULE_DICT = nn.ModuleDict()
"""Head names must not be its attributes (``values``, ``items``...): models hold heads in one."""


class Role(StrEnum):
    """The part an objective plays in training.

    ``main``: the target task that methods such as GradCos or alphaVIL optimise for;
    ``auxiliary``: a task trained only to help the main one; ``peer``: plain multitask, all equal.
    """

    MAIN = "main"
    AUXILIARY = "auxiliary"
    PEER = "peer"


class ObjectiveKind(StrEnum):
    """Which base loss an objective uses (learned-loss methods need to know).

    ``classification``: cross-entropy on logits [B, C] against integer labels [B];
    ``regression``: squared error on predictions [B, D] (or [B]) against targets of that shape;
    ``custom``: a task-defined loss (a learned loss cannot replace it).
    """

    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    CUSTOM = "custom"


class Capability(StrEnum):
    """Optional abilities of a task that some methods need (the ones twcore knows by name;
    plugins may declare and require other names as plain strings).

    ``validation``: a held-out split separate from test, which methods may meta-learn on;
    ``decision``: a differentiable decision layer z*(ŷ) and a decision objective (predict-then-
    optimise), exposed as ``task.decision`` (a :class:`twcore.contract.task.DecisionLayer`);
    ``decision-solver``: the decision layer also solves exactly for any values and knows the
    true values (a :class:`twcore.contract.decision.SolverDecisionLayer`);
    ``linear-decision``: besides, its objective is linear in the true values, obj(y, z) = yᵀz;
    ``affine-decision``: its objective is yᵀz − r(z) with r independent of the true values
    (e.g. a risk penalty; implied by ``linear-decision``);
    ``environment``: the task drives a gymnasium environment and its train stream yields replay
    batches.
    """

    VALIDATION = "validation"
    DECISION = "decision"
    DECISION_SOLVER = "decision-solver"
    LINEAR_DECISION = "linear-decision"
    AFFINE_DECISION = "affine-decision"
    ENVIRONMENT = "environment"


@dataclass(frozen=True)
class HeadSpec:
    """A named model output of `size` units (logits for classification, values for regression)."""

    name: str
    size: int


@dataclass(frozen=True)
class ObjectiveSpec:
    """A named per-example loss computed from one head.

    `target` is the key of the objective's target tensor in ``Batch.targets`` (defaults to the
    objective's name).
    """

    name: str
    head: str
    kind: ObjectiveKind = ObjectiveKind.CLASSIFICATION
    role: Role = Role.PEER
    target: str = ""

    def __post_init__(self) -> None:
        if not self.target:
            object.__setattr__(self, "target", self.name)
        object.__setattr__(self, "kind", ObjectiveKind(self.kind))
        object.__setattr__(self, "role", Role(self.role))


@dataclass(frozen=True)
class TaskSpec:
    """Everything models and methods need to know about a task.

    Attributes:
        input_shape: shape of one example's input, without the batch dimension.
        heads: the model's named outputs.
        objectives: the per-example losses, in a fixed order; methods receive per-objective
            losses as a tensor [K] in this order.
        capabilities: the optional abilities the task offers (:class:`Capability` values).
        primary_metric: the metric people compare for this task (e.g. ``main_acc``).
        primary_mode: ``max`` if larger is better, ``min`` otherwise.
        summary_metrics: the metrics shown in result tables, primary first.
    """

    input_shape: tuple[int, ...]
    heads: tuple[HeadSpec, ...]
    objectives: tuple[ObjectiveSpec, ...]
    capabilities: frozenset[str] = frozenset()
    primary_metric: str = "avg_loss"
    primary_mode: str = "min"
    summary_metrics: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        head_names = [h.name for h in self.heads]
        if len(set(head_names)) != len(head_names):
            raise ValueError(f"duplicate head names in task spec: {head_names}")
        for name in head_names:
            if hasattr(_MODULE_DICT, name):
                raise ValueError(
                    f"head name {name!r} is an attribute of torch.nn.ModuleDict, where models "
                    "keep their heads; rename the head (or the objective it is named after)"
                )
        names = [o.name for o in self.objectives]
        if not names:
            raise ValueError("a task spec needs at least one objective")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate objective names in task spec: {names}")
        for objective in self.objectives:
            if objective.head not in head_names:
                raise ValueError(
                    f"objective '{objective.name}' uses head '{objective.head}', which is not "
                    f"one of the heads {head_names}"
                )
        mains = [o.name for o in self.objectives if o.role is Role.MAIN]
        if len(mains) > 1:
            raise ValueError(f"a task has at most one main objective, got {mains}")
        if self.primary_mode not in ("max", "min"):
            raise ValueError(f"primary_mode must be 'max' or 'min', got {self.primary_mode!r}")
        object.__setattr__(
            self, "capabilities", frozenset(_capability(c) for c in self.capabilities)
        )
        if not self.summary_metrics:
            object.__setattr__(self, "summary_metrics", (self.primary_metric,))

    @property
    def objective_names(self) -> tuple[str, ...]:
        """Objective names in spec order."""
        return tuple(o.name for o in self.objectives)

    @property
    def num_objectives(self) -> int:
        """K, the number of objectives."""
        return len(self.objectives)

    @property
    def main_objective(self) -> ObjectiveSpec | None:
        """The objective with role ``main``, if any."""
        return next((o for o in self.objectives if o.role is Role.MAIN), None)

    @property
    def auxiliary_objectives(self) -> tuple[ObjectiveSpec, ...]:
        """The objectives with role ``auxiliary``."""
        return tuple(o for o in self.objectives if o.role is Role.AUXILIARY)

    @property
    def main_index(self) -> int | None:
        """Position of the main objective in :attr:`objectives`, if there is one."""
        return next((i for i, o in enumerate(self.objectives) if o.role is Role.MAIN), None)

    def objective(self, name: str) -> ObjectiveSpec:
        """The objective called `name` (KeyError if none)."""
        for objective in self.objectives:
            if objective.name == name:
                return objective
        raise KeyError(name)

    def has(self, capability: Capability | str) -> bool:
        """Whether the task offers `capability`."""
        return _capability(capability) in self.capabilities


def single_objective_spec(
    input_shape: tuple[int, ...], objective: str, size: int, kind: ObjectiveKind | str
) -> TaskSpec:
    """The spec of a plain supervised task: one head and one main objective called `objective`
    (`size` classes or outputs), a validation split, and primary metric ``acc`` (max) for
    classification or ``mse`` (min) for regression."""
    kind = ObjectiveKind(kind)
    classification = kind is ObjectiveKind.CLASSIFICATION
    primary = "acc" if classification else "mse"
    return TaskSpec(
        input_shape=tuple(input_shape),
        heads=(HeadSpec(objective, size),),
        objectives=(ObjectiveSpec(objective, head=objective, kind=kind, role=Role.MAIN),),
        capabilities=frozenset({Capability.VALIDATION}),
        primary_metric=primary,
        primary_mode="max" if classification else "min",
        summary_metrics=(primary, "loss"),
    )


@dataclass(frozen=True)
class Requirements:
    """What a method needs from a task. The registry refuses pairings that fall short.

    Attributes:
        min_objectives: the least number of objectives (e.g. 2 for task weighting).
        main_auxiliary: needs one ``main`` objective and at least one ``auxiliary`` one.
        capabilities: capabilities the task must offer.
        objective_kinds: if set, every objective must be of one of these kinds.
    """

    min_objectives: int = 1
    main_auxiliary: bool = False
    capabilities: frozenset[str] = frozenset()
    objective_kinds: frozenset[ObjectiveKind] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "capabilities", frozenset(_capability(c) for c in self.capabilities)
        )
        if self.objective_kinds is not None:
            object.__setattr__(
                self, "objective_kinds", frozenset(ObjectiveKind(k) for k in self.objective_kinds)
            )


def _capability(name: str) -> str:
    """A known :class:`Capability` member, or the plain name for a plugin-defined one."""
    try:
        return Capability(name)
    except ValueError:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a capability is a non-empty string, got {name!r}") from None
        return name
