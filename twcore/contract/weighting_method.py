"""The engine's one adapter for a :class:`~twcore.contract.weighting.Weighting`: a method plugin
whose update is a per-step weighting implements :meth:`WeightingMethod.build_rule` and nothing
else (the weighted step, the shared parameters, the state and the logs' names are written here
once)."""

from __future__ import annotations

import typing
import warnings
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from twcore.autodiff.graph import own_leaves
from twcore.autodiff.layer_gram import GramRecorder
from twcore.autodiff.per_objective import per_objective_grads
from twcore.contract.batch import Batch
from twcore.contract.method import Method, MethodContext, StepResult
from twcore.contract.model import Model, parameters_shared_by_objectives
from twcore.contract.spec import TaskSpec
from twcore.contract.task import stack_objective_losses
from twcore.contract.weighting import GramSource, LossWeighting, Weighting


def shared_parameters(model: Model, spec: TaskSpec, *, method: str) -> list[nn.Parameter]:
    """The parameters several objectives share (a twcore model's trunk, and heads serving
    several objectives); ValueError naming `method` if there are none."""
    found = parameters_shared_by_objectives(model, spec)
    if not found:
        raise ValueError(
            f"{method} needs parameters shared by several objectives; this model and task "
            "share none"
        )
    return found


class WeightingMethod(Method):
    """The engine's adapter for a :class:`Weighting`: every step, the objectives' losses on the
    batch go to the rule, which writes the gradients; then the run's optimiser steps.

    A plugin implements :meth:`build_rule` (and, for rules comparing gradients on something
    other than the shared parameters, :meth:`losses_and_shared`); the rule's state is the
    method's checkpointed state. A rule that compares gradients gets the parameters the
    objectives share, or the run fails before training with a clear error if there are none.

    A rule that needs only the Gram matrix of those gradients (``uses_gram``) gets it from a
    :class:`~twcore.autodiff.layer_gram.GramRecorder` of the step's forward pass, unless the
    method's config says ``gradients: rows`` (the K gradient rows, the reference path), the
    comparison is not on the shared parameters (:meth:`compares_parameters`), or the run is
    data-parallel (the recorder would see one process's rows only). With ``gradients: auto``
    (the default) the first step's forward pass decides between the two by their estimated
    multiply-adds (:meth:`~twcore.autodiff.layer_gram.GramRecorder.path_costs`: shapes and K
    only, so every run of a config takes the same path) and keeps that path; the choice is
    :attr:`gradient_path`. The first step on the Gram path checks its matrix, and the weighted
    gradient the recorder gives for the step, against the rows' and, if either differs (a model
    using its layers in a way the recorder cannot see), warns and uses the rows from then on.
    """

    def __init__(self, config: Any, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.rule = self.build_rule(config, ctx)
        self.shared: list[nn.Parameter] = []
        self.recorder: GramRecorder | None = None
        self._gram_checked = False
        self._path_chosen = True
        if self.rule.compares_gradients:
            self.shared = shared_parameters(ctx.model, ctx.spec, method=type(self.rule).__name__)
            path = getattr(config, "gradients", GRAM)
            records = (
                self.rule.uses_gram
                and path in (GRAM, AUTO)
                and self.compares_parameters()  # fixed before this point: on_features
                and GramRecorder.usable()
            )
            if records:
                trunk = getattr(ctx.model, "trunk", None)
                cut = trunk if isinstance(trunk, nn.Module) else None
                self.recorder = GramRecorder(self.shared, ctx.model, cut=cut)
                self._path_chosen = path != AUTO
                self.recorder.tally_others = not self._path_chosen

    on_features: bool = False
    """Whether the rule compares the gradients on the trunk's output (the shared representation
    z = ``model.features(x)``, as MGDA-UB does: backward passes through the heads only) instead
    of on the shared parameters. A method sets it before ``super().__init__`` (see
    :func:`compares_on_features` for an ``interaction`` option)."""

    def compares_parameters(self) -> bool:
        """Whether the rule compares gradients on the shared parameters (the default), so that
        a Gram recorder applies; a method comparing them on something else says False."""
        return not self.on_features

    def _recording(self) -> tuple[AbstractContextManager[Any], GramRecorder | None]:
        """The context the step's forward pass runs in, and the Gram source for the rule."""
        recorder = self.recorder
        if recorder is None or not self.rule.compares_this_step():
            return nullcontext(), None
        return recorder, recorder

    @property
    def gradient_path(self) -> str | None:
        """How the rule gets the gradients it compares on the shared parameters: ``"gram"``
        (a recorded forward pass) or ``"rows"``; None before ``gradients: auto`` has chosen
        (the first step) and for rules that need no Gram matrix."""
        if not (self.rule.uses_gram and self.compares_parameters() and self._path_chosen):
            return None
        return GRAM if self.recorder is not None else ROWS

    def _checked(self, recorder: GramRecorder, losses: Tensor) -> GramSource | None:
        """The recorder on every step but the first; on the first, with ``gradients: auto``,
        the cheaper path by the recorded shapes (None: the rows, from then on); on the Gram
        path its matrix and its weighted gradient checked against the gradient rows' (a model
        may use its layers in ways a recorder cannot see: a weight also used through a
        functional call, checkpointing): if either differs, a warning, and the rows from then
        on (None)."""
        if not self._path_chosen:
            self._path_chosen = True
            recorder.tally_others = False  # the heads' shapes were needed for this choice only
            if recorder.path_costs(losses).cheaper == ROWS:
                self.recorder = None
                return None
        if self._gram_checked:
            return recorder
        self._gram_checked = True
        recorded = recorder.gram(losses).detach()
        rows = per_objective_grads(losses, self.shared).detach()
        reference = (rows @ rows.T).to(recorded)
        # Under bf16/fp16 autocast the rows themselves carry 3 significant digits.
        device = losses.device.type
        low = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) in (
            torch.bfloat16,
            torch.float16,
        )
        tolerance = 5e-2 if low else 1e-3
        mismatch = _mismatch("Gram matrix", recorded, reference, tolerance)
        if not mismatch:
            # The weighted gradient the step takes from the recorder, for weights of both signs
            # and none zero (every objective's part is checked).
            count = len(losses)
            steps = torch.arange(1, count + 1, dtype=rows.dtype, device=rows.device) / count
            weights = torch.where(torch.arange(count, device=rows.device) % 2 == 0, steps, -steps)
            combined = recorder.weighted_gradients(weights)
            if combined is not None:
                mismatch = _gradient_mismatch(combined, _combined(weights, rows), tolerance)
            if not mismatch:
                params = list(self.ctx.model.parameters())
                own = own_leaves(losses, self.shared, params)
                mismatch = _own_gradients_mismatch(
                    recorder, losses, params, own, weights, tolerance
                )
        if not mismatch:
            return _CheckedGram(recorded, recorder)
        self.recorder = None
        warnings.warn(
            f"{type(self.rule).__name__}: the {mismatch} from the recorded forward pass "
            "differs from the gradient rows' on this model; using the rows from now on",
            stacklevel=2,
        )
        return None

    @property
    def accumulates(self) -> bool:  # type: ignore[override]
        """Micro-batches add up exactly when the rule is linear (weights held before the step)."""
        return self.rule.linear

    @property
    def loss_scaling(self) -> bool:  # type: ignore[override]
        """Float16 loss scaling is exact when the rule weights the losses from their values
        (a :class:`LossWeighting`): its only gradients are those of the weighted backward. Not
        on the trunk's output (:attr:`on_features`), a path that bypasses the model's forward
        pass, where the scale enters."""
        return isinstance(self.rule, LossWeighting) and not self.on_features

    @classmethod
    def rule_class(cls) -> type[Weighting] | None:
        """The rule class :meth:`build_rule` is annotated to return (None if it is not
        annotated with one), so that what a method can do is known before it is built."""
        try:
            returned = typing.get_type_hints(cls.build_rule).get("return")
        except Exception:  # an annotation that does not resolve: unknown
            return None
        return returned if isinstance(returned, type) and issubclass(returned, Weighting) else None

    @abstractmethod
    def build_rule(self, config: Any, ctx: MethodContext) -> Weighting:
        """The rule this method steps, from its options and the run's context."""

    def losses_and_shared(self, batch: Batch) -> tuple[Tensor, Sequence[Tensor]]:
        """The step's losses [K] and the tensors they share: the shared parameters, or with
        :attr:`on_features` the trunk's output (one forward pass either way)."""
        if not self.on_features:
            return self.ctx.objective_losses(batch), self.shared
        model = self.ctx.model
        features = model.features(batch.inputs)
        outputs = model.predict_heads(features)
        return stack_objective_losses(self.ctx.task, outputs, batch), [features]

    def train_step(self, batch: Batch) -> StepResult:
        if self.ctx.accumulate > 1:
            return self._accumulated_step(batch)
        recording, recorder = self._recording()
        with recording:
            losses, shared = self.losses_and_shared(batch)
        try:
            if not bool(torch.isfinite(losses.detach()).all()):
                # Left to the engine, which stops the run as diverged naming the objective.
                return StepResult(losses=losses.detach())
            self.ctx.optimizer.zero_grad(set_to_none=True)
            gram = self._checked(recorder, losses) if recorder is not None else None
            extra = {"gram": gram} if gram is not None else {}
            step = self.rule.backward(losses, shared, params=self.ctx.model.parameters(), **extra)
        finally:
            if recorder is not None:
                recorder.clear()
        self.ctx.optimizer_step()
        logs = name_objectives(step.logs, self.ctx.spec.objective_names)
        return StepResult(losses=losses.detach(), weights=step.weights, logs=logs)

    def _accumulated_step(self, batch: Batch) -> StepResult:
        """The step on `batch` in ``ctx.accumulate`` micro-batches: each adds its share of the
        linear rule's gradient (losses scaled by its fraction of the batch), one optimiser
        step at the end. Only one micro-batch's graph is alive at a time."""
        self.ctx.optimizer.zero_grad(set_to_none=True)
        total = len(batch)
        pieces = torch.arange(total, device=batch.inputs.device).tensor_split(self.ctx.accumulate)
        mean = torch.zeros(self.ctx.spec.num_objectives, device=batch.inputs.device)
        step = None
        for piece in pieces:
            if piece.numel() == 0:
                continue
            losses, shared = self.losses_and_shared(batch.index(piece))
            if not bool(torch.isfinite(losses.detach()).all()):
                return StepResult(losses=losses.detach())
            share = piece.numel() / total
            step = self.rule.backward(losses * share, shared, params=self.ctx.model.parameters())
            mean = mean + losses.detach() * share
        self.ctx.optimizer_step()
        assert step is not None  # the batch has at least one example
        logs = name_objectives(step.logs, self.ctx.spec.objective_names)
        return StepResult(losses=mean, weights=step.weights, logs=logs)

    def state_dict(self) -> dict[str, Any]:
        return self.rule.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rule.load_state_dict(state)


def _own_gradients_mismatch(
    recorder: GramRecorder,
    losses: Tensor,
    params: Sequence[Tensor],
    own: Sequence[Tensor],
    weights: Tensor,
    tolerance: float,
) -> str:
    """ "" if the heads' parameters the recorder found are `own` (those the losses reach other
    than the shared ones, in `params`' order) and the heads' gradient Σ_k b_k ∇L_k it gives
    for coefficients b = `weights` (or ones, where it knows only the sum) matches the gradient
    rows' (or it gives none: the step then takes a backward pass through the heads), else
    which differs."""
    found = recorder.own_tensors(recorder.params, params)
    if found is not None and [id(t) for t in found] != [id(t) for t in own]:
        return "heads' parameters"
    if not own:
        return ""
    recorded = recorder.own_gradients(own, weights)
    if recorded is None:  # a head several losses reach: the sum alone is known
        weights = torch.ones_like(weights)
        recorded = recorder.own_gradients(own)
    if recorded is None:
        return ""
    expected = _combined(weights, per_objective_grads(losses, own).detach())
    return _gradient_mismatch(recorded, expected, tolerance, name="heads' gradient")


def _combined(weights: Tensor, rows: Tensor) -> Tensor:
    """Σ_k w_k rows_k [P], in float32 or wider, outside autocast (the reference the recorder's
    gradients are checked against)."""
    wide = torch.promote_types(rows.dtype, torch.float32)
    with torch.autocast(rows.device.type, enabled=False):
        return weights.to(wide) @ rows.to(wide)


def _mismatch(name: str, recorded: Tensor, reference: Tensor, tolerance: float) -> str:
    """ "" if `recorded` matches `reference` to `tolerance` (relative, and absolute at that
    fraction of a percent of the reference's largest entry), else what differs and by how
    much."""
    scale = float(reference.abs().max()) if reference.numel() else 0.0
    if torch.allclose(recorded, reference, rtol=tolerance, atol=tolerance * 1e-2 * scale):
        return ""
    largest = float((recorded - reference).abs().max())
    return f"{name} (by up to {largest:.3g})"


def _gradient_mismatch(
    recorded: Sequence[Tensor], reference: Tensor, tolerance: float, name: str = "weighted gradient"
) -> str:
    """ "" if each parameter's recorded gradient is within `tolerance` of its part of the flat
    `reference` relative to that part's norm (a parameter whose gradient is missing differs by
    all of it, unless its share of the whole gradient's norm is below tolerance × 1e-3), else
    which parameter differs and by how much."""
    floor = tolerance * 1e-3 * float(reference.norm())
    start = 0
    for index, grad in enumerate(recorded):
        part = reference[start : start + grad.numel()]
        start += grad.numel()
        error = float((grad.reshape(-1).to(part) - part).norm())
        if error > tolerance * float(part.norm()) + floor:
            return f"{name} (parameter {index}: off by {error:.3g} in norm)"
    return ""


class _CheckedGram:
    """The recorder's Gram matrix already computed (the first step's, checked), and the
    recorder's weighted gradients from that computation."""

    def __init__(self, matrix: Tensor, recorder: GramRecorder) -> None:
        self.matrix = matrix
        self.recorder = recorder
        self.params = recorder.params

    def gram(self, losses: Tensor, *, retain_graph: bool = True) -> Tensor:
        """The checked matrix."""
        return self.matrix

    def weighted_gradients(self, weights: Tensor) -> list[Tensor] | None:
        """The recorder's, from the computation of the checked matrix."""
        return self.recorder.weighted_gradients(weights)

    def own_gradients(
        self, tensors: Sequence[Tensor], coefficients: Tensor | None = None
    ) -> list[Tensor] | None:
        """The recorder's heads' gradients, from the computation of the checked matrix."""
        return self.recorder.own_gradients(tensors, coefficients)

    def take_own_gradients(
        self, tensors: Sequence[Tensor], coefficients: Tensor | None = None
    ) -> list[Tensor] | None:
        """The recorder's heads' gradients, handed over to the step."""
        return self.recorder.take_own_gradients(tensors, coefficients)

    def own_tensors(
        self, shared: Sequence[Tensor], params: Iterable[Tensor]
    ) -> list[Tensor] | None:
        """The recorder's heads' parameters, as the computation of the checked matrix found
        them."""
        return self.recorder.own_tensors(shared, params)


INTERACTIONS = ("auto", "parameters", "features")
"""The ``interaction`` option of methods that can compare gradients on either: the shared
parameters, the trunk's output, or auto (features if the model's trunk has parameters)."""


def compares_on_features(interaction: str, model: Model) -> bool:
    """Whether an ``interaction`` option (:data:`INTERACTIONS`) means the trunk's output."""
    if interaction == "auto":
        return bool(model.shared_parameters())
    return interaction == "features"


AUTO = "auto"
GRAM = "gram"
ROWS = "rows"
GRADIENT_PATHS = (AUTO, GRAM, ROWS)
"""The ``gradients`` option of methods whose rule ``uses_gram``: the cheaper of the two paths
by the first step's shapes (the default), the Gram matrix from a recorded forward pass, or the
K gradient rows (the reference path)."""


RULE_ANSWERS: dict[str, Callable[[type[Weighting]], bool]] = {
    "accumulates": lambda rule: rule.linear,
    "loss_scaling": lambda rule: issubclass(rule, LossWeighting),
}
"""How a weighting method's flags follow from its rule's class."""


def known_flag(method: type[Method], name: str) -> bool | None:
    """A method class's flag `name` (``accumulates``, ``loss_scaling``), known before it is
    built: the class attribute, or for a weighting method what its annotated rule's class
    says (None when only the built method can tell)."""
    # The class attribute as written (on a weighting method: the property, not its value).
    flag = next(k.__dict__[name] for k in method.__mro__ if name in k.__dict__)
    if isinstance(flag, bool):
        return flag
    if issubclass(method, WeightingMethod):
        rule = method.rule_class()
        return RULE_ANSWERS[name](rule) if rule is not None else None
    return None


def accumulates(method: type[Method]) -> bool | None:
    """Whether a method class accumulates micro-batches, known before it is built
    (:func:`known_flag`)."""
    return known_flag(method, "accumulates")


def scales_losses(method: type[Method]) -> bool | None:
    """Whether a method class is exact under float16 loss scaling, known before it is built
    (:func:`known_flag`)."""
    return known_flag(method, "loss_scaling")


def name_objectives(logs: dict[Any, Any], names: Sequence[str]) -> dict[Any, Any]:
    """`logs` with every integer key (a rule's per-objective value) replaced by that
    objective's name, in nested dicts too."""
    named: dict[Any, Any] = {}
    for key, value in logs.items():
        shown = names[key] if isinstance(key, int) and 0 <= key < len(names) else key
        named[shown] = name_objectives(value, names) if isinstance(value, dict) else value
    return named
