"""Data parallelism that every method gets right without knowing about it.

The usual recipe (DistributedDataParallel) averages ``.grad`` after ``loss.backward()``. That is
enough for a plain sum of losses, and wrong for the methods this framework is about: GradCos's
cosines, L-DRO's interaction matrix, AdaLFL's meta-gradient or TaskMet's hypergradient are
nonlinear in the gradients, computed with ``torch.autograd.grad``, through lookaheads and
second-order passes, never via ``.grad``.

Here the sharding lives inside one module instead (a model's shared trunk), with four
differentiable collectives that make every quantity outside it the *global* one, identical on
every process:

- :class:`Shard` cuts a replicated tensor (the global batch's inputs) to this process's rows;
- :class:`Gather` concatenates every process's rows back into the replicated whole;
- :class:`Replicate` hands the module's replicated parameters to the local computation, and
  :class:`SumReduce` sums their local gradient contributions across processes.

Each is the adjoint of another (Shard ↔ Gather, Replicate ↔ SumReduce), so gradients of any
order are those of the single-process computation on the global batch: ``backward``,
``autograd.grad``, ``create_graph`` passes, batched per-objective Jacobians
(``is_grads_batched``) and ``functional_call`` lookaheads alike (``torch.func.vmap`` through a
sharded module is not supported: it raises). Only the module's forward and
backward passes are split; what follows it (losses, weightings) runs on the whole batch in every
process, except row-wise work without gradients that a caller splits with
:func:`rows_in_shares` (a decision task's exact solves). Each forward pass through the module
costs one all-gather of its outputs, each backward pass one all-reduce of its parameters'
gradients (and one all-gather of its input gradient if its inputs require one).

Every process must run the same program on the same data (the same seeds give that): the
collectives are matched by order.
"""

from __future__ import annotations

import threading
import types
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch._C import _functorch
from torch.func import functional_call

STOCHASTIC_MODULES: tuple[type[nn.Module], ...] = (nn.modules.dropout._DropoutNd,)
"""Modules whose training-mode output draws from the global RNG (each process then draws for
its own rows, from a stream forked per process so the processes stay in step)."""

STATEFUL_MODULES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._NormBase,)
"""Modules that update buffers from the batch: their statistics would be per process, so
:func:`shard_module` refuses them."""


@dataclass
class Traffic:
    """What this process's collectives moved since :meth:`reset`: calls and bytes sent into
    all-reduces (gradients) and all-gathers (outputs, input gradients)."""

    all_reduce_calls: int = 0
    all_reduce_bytes: int = 0
    all_gather_calls: int = 0
    all_gather_bytes: int = 0

    def reset(self) -> None:
        self.all_reduce_calls = self.all_reduce_bytes = 0
        self.all_gather_calls = self.all_gather_bytes = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


traffic = Traffic()
"""The process's running count of data-parallel communication."""


@dataclass(frozen=True)
class ProcessGroup:
    """The processes a sharded module spans: this one's rank and their number."""

    rank: int
    world_size: int
    group: Any = None  # a torch.distributed group; None is the default one

    @classmethod
    def default(cls) -> ProcessGroup:
        """The default process group (``torch.distributed`` must be initialised)."""
        return cls(dist.get_rank(), dist.get_world_size())


def shard_sizes(rows: int, world_size: int) -> list[int]:
    """How many of `rows` each process takes: as even as possible, earlier ranks one more."""
    base, extra = divmod(rows, world_size)
    return [base + (1 if rank < extra else 0) for rank in range(world_size)]


def _my_rows(rows: int, pg: ProcessGroup) -> tuple[int, int]:
    sizes = shard_sizes(rows, pg.world_size)
    start = sum(sizes[: pg.rank])
    return start, sizes[pg.rank]


def _all_gather_rows(local: Tensor, rows: int, pg: ProcessGroup) -> Tensor:
    """The [rows, ...] concatenation of every process's local rows (uneven shards padded)."""
    if _functorch.is_legacy_batchedtensor(local):
        level = _legacy_vmap_level()
        physical = torch._remove_batch_dim(local, level, 1, 0)  # [N, local_rows, ...]
        gathered = _all_gather_rows(physical.transpose(0, 1), rows, pg).transpose(0, 1)
        return torch._add_batch_dim(gathered.contiguous(), 0, level)
    sizes = shard_sizes(rows, pg.world_size)
    widest = max(sizes)
    padded = local.new_zeros((widest, *local.shape[1:]))
    padded[: local.shape[0]] = local
    pieces = [torch.empty_like(padded) for _ in range(pg.world_size)]
    dist.all_gather(pieces, padded.contiguous(), group=pg.group)
    traffic.all_gather_calls += 1
    traffic.all_gather_bytes += padded.numel() * padded.element_size()
    return torch.cat([piece[:size] for piece, size in zip(pieces, sizes, strict=True)])


def _all_reduce(partial: Tensor, pg: ProcessGroup) -> Tensor:
    """The sum of `partial` over the processes."""
    if _functorch.is_legacy_batchedtensor(partial):
        # Inside a batched backward pass (``is_grads_batched``, as in per-objective Jacobians):
        # the sum is elementwise, so the K rows reduce as one tensor.
        level = _legacy_vmap_level()
        physical = torch._remove_batch_dim(partial, level, 1, 0)
        return torch._add_batch_dim(_all_reduce(physical, pg), 0, level)
    total = partial.clone()
    dist.all_reduce(total, group=pg.group)
    traffic.all_reduce_calls += 1
    traffic.all_reduce_bytes += total.numel() * total.element_size()
    return total


def _legacy_vmap_level() -> int:
    """The innermost level of the batched-gradient vmap this code runs under."""
    level: int = torch._C._vmapmode_increment_nesting()
    torch._C._vmapmode_decrement_nesting()
    return level - 1


def _apply(function: type[torch.autograd.Function], *args: Any) -> Any:
    """``function.apply(*args)`` (unannotated in torch)."""
    return function.apply(*args)


class Shard(torch.autograd.Function):
    """Replicated [rows, ...] -> this process's rows; backward: :class:`Gather`."""

    @staticmethod
    def forward(replicated: Tensor, pg: ProcessGroup) -> Tensor:
        start, size = _my_rows(replicated.shape[0], pg)
        # A copy, not a view: the module may work on its rows in place (ReLU(inplace=True)).
        return replicated[start : start + size].clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        replicated, pg = inputs
        ctx.pg, ctx.rows = pg, replicated.shape[0]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return _apply(Gather, grad, ctx.rows, ctx.pg), None


class Gather(torch.autograd.Function):
    """This process's rows -> the replicated [rows, ...] whole; backward: :class:`Shard`."""

    @staticmethod
    def forward(local: Tensor, rows: int, pg: ProcessGroup) -> Tensor:
        return _all_gather_rows(local, rows, pg)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.pg = inputs[2]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        return _apply(Shard, grad, ctx.pg), None, None


class SumReduce(torch.autograd.Function):
    """Local contributions -> their sum over processes; backward: :class:`Replicate`."""

    @staticmethod
    def forward(partial: Tensor, pg: ProcessGroup) -> Tensor:
        return _all_reduce(partial, pg)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.pg = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return _apply(Replicate, grad, ctx.pg), None


class Replicate(torch.autograd.Function):
    """A replicated tensor used by this process's share of the work; backward: :class:`SumReduce`
    (every process's contribution to its gradient, summed)."""

    @staticmethod
    def forward(replicated: Tensor, pg: ProcessGroup) -> Tensor:
        return replicated.view_as(replicated)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.pg = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return _apply(SumReduce, grad, ctx.pg), None


class ReplicateAll(torch.autograd.Function):
    """:class:`Replicate` for many tensors of one dtype at once: their gradients are summed
    across processes in one all-reduce (a bucket) instead of one per tensor."""

    @staticmethod
    def forward(pg: ProcessGroup, *replicated: Tensor) -> tuple[Tensor, ...]:
        return tuple(tensor.view_as(tensor) for tensor in replicated)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.pg = inputs[0]
        ctx.shapes = [tensor.shape for tensor in inputs[1:]]

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        # Unused outputs arrive as zeros (materialised), so every process sends the same bucket.
        flat = torch.cat([grad.reshape(-1) for grad in grads])
        total = _apply(SumReduce, flat, ctx.pg)
        sizes = [shape.numel() for shape in ctx.shapes]
        pieces = total.split(sizes)
        return (None, *(piece.view(shape) for piece, shape in zip(pieces, ctx.shapes, strict=True)))


def replicate_all(tensors: dict[str, Tensor], pg: ProcessGroup) -> dict[str, Tensor]:
    """`tensors` handed to this process's share of the work, the ones that need a gradient
    bucketed by dtype and device (one all-reduce per bucket in the backward pass)."""
    buckets: dict[tuple[torch.dtype, torch.device], list[str]] = {}
    for name, tensor in tensors.items():
        if tensor.requires_grad:
            buckets.setdefault((tensor.dtype, tensor.device), []).append(name)
    replicated = dict(tensors)
    for names in buckets.values():
        outputs = _apply(ReplicateAll, pg, *(tensors[name] for name in names))
        replicated.update(zip(names, outputs, strict=True))
    return replicated


_inside = threading.local()


def shard_module(module: nn.Module, pg: ProcessGroup) -> nn.Module:
    """Split `module`'s forward and backward passes over the processes of `pg`, in place.

    Afterwards ``module(inputs)`` (inputs [rows, ...], the same in every process) runs the
    module on this process's rows only and returns every process's outputs, [rows, ...],
    with gradients of any order equal to the single-process ones (module docstring). It works
    under ``torch.func.functional_call`` too: the parameters it is called with are the ones
    replicated. Parameter names, ``state_dict`` and everything else stay as they were.

    Raises ValueError for a module with batch statistics (batch norm), which a shard cannot
    reproduce.
    """
    stateful = [(n, m) for n, m in module.named_modules() if isinstance(m, STATEFUL_MODULES)]
    if stateful:
        name, found = stateful[0]
        raise ValueError(
            f"module '{name}' keeps batch statistics ({type(found).__name__}), which differ per "
            "process in a data-parallel run; use a normalisation without running statistics "
            "(LayerNorm, GroupNorm)"
        )
    module._twcore_process_group = pg  # type: ignore[assignment]
    module.forward = types.MethodType(_sharded_forward, module)
    return module


@contextmanager
def process_local() -> Iterator[None]:
    """Inside, every sharded module computes on the inputs it is given in this process alone,
    with no collective: for work a process does on its own (an environment step's action, its
    share of the evaluation episodes), where the processes may call the module a different
    number of times. Gradients through such a call are this process's alone."""
    outer = getattr(_inside, "local", False)
    _inside.local = True
    try:
        yield
    finally:
        _inside.local = outer


def _in_a_run_of_several() -> bool:
    """Whether this process is one of several in an initialised process group and not inside
    :func:`process_local` (where it works as if alone: it takes every unit and every row)."""
    if getattr(_inside, "local", False):
        return False
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def process_share(count: int) -> range:
    """The indices of `count` independent units of work (evaluation episodes) this process
    takes: every `world_size`-th from its rank; all of them outside a data-parallel run or
    inside :func:`process_local`.

    This and the helpers below are collective where they split work: in a data-parallel run,
    every process calls them in the same order (a call from process 0 alone, e.g. scoring after
    the run in a script that keeps the process group, waits for the others in vain)."""
    if not _in_a_run_of_several():
        return range(count)
    return range(dist.get_rank(), count, dist.get_world_size())


def sum_over_processes(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Each value summed over the processes of a data-parallel run (in float64, one
    all-reduce; the values themselves outside one). Every process passes the same keys."""
    if not _in_a_run_of_several():
        return dict(values)
    names = sorted(values)
    total = torch.tensor([values[name] for name in names], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    traffic.all_reduce_calls += 1
    traffic.all_reduce_bytes += total.numel() * total.element_size()
    return dict(zip(names, total.tolist(), strict=True))


_FAILED = "__failed__"


def sum_of_shares(
    count: int,
    unit: Callable[[int], Mapping[str, float]],
    names: Sequence[str],
    device: torch.device,
) -> dict[str, float]:
    """Σ_{i < count} unit(i)[name] for each of `names`: each process of a data-parallel run
    runs its share of the units (:func:`process_share`) inside :func:`process_local`, and the
    sums are added over the processes; one process alone runs them all, in order. If `unit`
    raises in one process, every process raises (the failure travels with the sums, so no
    process waits for the others' sums in vain)."""
    if _FAILED in names:
        raise ValueError(f"'{_FAILED}' is reserved")
    sums = dict.fromkeys(names, 0.0)
    failure: Exception | None = None
    share = process_share(count)  # outside process_local, where a process takes them all
    try:
        with process_local():
            for index in share:
                values = unit(index)
                for name in names:
                    sums[name] += float(values[name])
    except Exception as exc:  # agreed on below, then raised in this process
        failure = exc
    totals = sum_over_processes({**sums, _FAILED: 1.0 if failure else 0.0}, device)
    if failure is not None:
        raise failure
    if totals.pop(_FAILED):
        raise RuntimeError(
            "another process of this data-parallel run failed in its share of the work"
        )
    return totals


def rows_in_shares(count: int, compute: Callable[[slice], Tensor]) -> Tensor:
    """``compute(slice(0, count))``, each process of a data-parallel run computing only its own
    rows and the rows gathered: for row-wise work without gradients that every process would
    otherwise repeat on the global batch (a solver's exact decisions, one per instance).

    `compute` maps a slice of the rows to their results [rows in it, ...]; row i's result may
    depend only on row i (its instance). Outside a data-parallel run, inside
    :func:`process_local`, or with fewer rows than processes, it runs once on all rows. It costs
    one all-reduce (whether any process failed) and one all-gather of the results. If `compute`
    raises in one process, every process computes all the rows itself instead, so a
    deterministic failure (a NaN, an infeasible instance) raises in every process with the
    single-process error, and a passing one gives the single-process result.

    A retry that passes after a failed split warns (a transient failure, or rows that are not
    independent, which lose the split on every call). A retry that fails in some processes
    only (a process's own out-of-memory error) raises in all of them.

    Raises ValueError for results that require a gradient: the gather would cut it.
    """
    if not _in_a_run_of_several():
        return compute(slice(0, count))
    pg = ProcessGroup.default()
    if count < pg.world_size:
        return compute(slice(0, count))
    start, size = _my_rows(count, pg)
    local: Tensor | None = None
    try:
        with process_local():  # its own rows alone: nothing inside may wait for the others
            local = compute(slice(start, start + size))
    except Exception:  # every process learns of it below, then all compute every row
        local = None
    if _any_process_failed(local is None):
        return _whole_after_a_failed_split(count, compute)
    assert local is not None
    if local.requires_grad:
        raise ValueError(
            "rows_in_shares gathers results without their gradients; compute them under "
            "torch.no_grad(), or shard the differentiable part with shard_module"
        )
    home = local.device
    gathered = _all_gather_rows(local.to(_collective_device()), count, pg)
    return gathered.to(home)


def _whole_after_a_failed_split(count: int, compute: Callable[[slice], Tensor]) -> Tensor:
    """Every row computed by every process, after some process's share failed; the processes
    agree on the outcome, so none goes on to a collective the others never reach."""
    try:
        with process_local():
            whole = compute(slice(0, count))
    except Exception:
        _any_process_failed(True)
        raise
    if _any_process_failed(False):
        raise RuntimeError(
            "another process of this data-parallel run failed to compute every row after a "
            "share of them had failed"
        )
    warnings.warn(
        f"a process's share of {count} rows failed, and all of them together passed: either "
        "the failure was transient or the rows are not independent (each row's result must "
        "depend on its row alone, or every such call is computed whole in every process)",
        stacklevel=3,
    )
    return whole


def _collective_device() -> torch.device:
    """Where this process's collectives take tensors: its GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def flag_in_any_process(flag: bool, device: torch.device) -> bool:
    """Whether `flag` holds in any process of the initialised group: one all-reduce of a
    one-element tensor on `device` (where the group's backend takes it), not counted in
    :data:`traffic` (the engine's agreement on stopping, made every step)."""
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _any_process_failed(failed: bool) -> bool:
    """Whether `failed` holds in any process (one all-reduce, counted in :data:`traffic`)."""
    traffic.all_reduce_calls += 1
    traffic.all_reduce_bytes += 8  # one int64
    return flag_in_any_process(failed, _collective_device())


def _sharded_forward(self: nn.Module, inputs: Tensor, *args: Any, **kwargs: Any) -> Any:
    """The forward pass of a module :func:`shard_module` split. Everything it needs is read from
    `self` (the class's own forward, the process group), so a ``copy.deepcopy`` of the module
    (a target network, a scratch copy) computes with its own parameters."""
    if getattr(_inside, "module", None) is self or getattr(_inside, "local", False):
        return type(self).forward(self, inputs, *args, **kwargs)
    pg: ProcessGroup = self._twcore_process_group  # type: ignore[assignment]
    stochastic = self.training and any(isinstance(m, STOCHASTIC_MODULES) for m in self.modules())
    rows = inputs.shape[0]
    replicated = replicate_all(dict(self.named_parameters()), pg)
    local = _apply(Shard, inputs, pg)
    outer, _inside.module = getattr(_inside, "module", None), self
    try:
        with _own_rng_stream(pg, enabled=stochastic):
            output = functional_call(self, replicated, (local, *args), kwargs)
    finally:
        _inside.module = outer
    return _apply(Gather, output, rows, pg)


@contextmanager
def _own_rng_stream(pg: ProcessGroup, *, enabled: bool) -> Iterator[None]:
    """Draw from a per-process RNG stream inside, then advance the global stream the same way in
    every process (so the processes stay in step; dropout masks then differ from a
    single-process run's)."""
    if not enabled:
        yield
        return
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        seed = int(torch.randint(0, 2**62, (1,)).item())
        torch.manual_seed(seed + pg.rank)
        yield
    torch.randint(0, 2, (1,))
