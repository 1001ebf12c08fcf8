"""Time per step of the gradient-comparing weightings against equal weighting, for K objectives.

    python3 benchmarks/gram_weighting.py [--ks 2 5 10 20] [--models mlp cnn] [--steps 20]
        [--repeats 3] [--threads 1] [--batch 64] [--out benchmarks/results/gram_weighting.md]
    python3 benchmarks/gram_weighting.py --profile mlp 20 "gradcos (gram)"   # where it goes
    python3 benchmarks/gram_weighting.py --phases   # the Gram path's arithmetic, phase by phase
    python3 benchmarks/gram_weighting.py --recording   # what recording costs the forward pass

Each model is twcore's default ``mlp`` (128-128) or ``cnn`` (LeNet-style, 16-32 channels, a
128 dense layer) trunk on 28×28 inputs with K ten-class linear heads, one per objective (objective
0 is GradCos's main one), trained by Adam on seeded random data in a plain loop that calls the
rules exactly as the engine does. Per step, the fastest of ``--repeats`` runs of ``--steps``
steps, all in this one process and thread count, one configuration after another:

- ``ew``: one backward pass of the mean loss;
- ``gradcos`` and ``ldro`` (``interaction=parameters``, cosines every step, k = 1), each on both
  gradient paths: ``rows`` (the K gradients on the trunk from one vectorised backward pass) and
  ``gram`` (the K×K Gram matrix from a recorded forward pass through the trunk's output, then
  the step's gradients, trunk and heads, from what that left).

two references:

- ``floor``: ew's step plus the work no exact Gram matrix avoids — K − 1 further cotangents
  pushed from the trunk's output back through the trunk to its first layer's output (one
  vectorised backward pass that computes no parameter gradient; the heads' part, which an
  exact method needs too, is left out). Every layer's share of ⟨∇L_i, ∇L_j⟩ depends on the K
  objectives' gradients at that layer's output, and those are K different linear images of
  the trunk's output gradients, so an exact method computes them, in some form, K times;
  ew's backward pass counts as one of them (the step's weighted gradient at each layer is a
  combination of the K, and its weight gradients are ew's): a lower bound for any exact method;
- ``gradcos arithmetic`` (the mlp only): GradCos's step on the Gram path written out by hand
  for this trunk — each head reads its own view of the trunk's output, one backward pass of
  the losses' sum to those views and the heads' parameters, the K cotangents through the trunk
  to each linear layer's output in one vectorised pass, each layer's share ⟨XXᵀ + 11ᵀ, D_i D_jᵀ⟩,
  the weights, each layer's Xᵀ Σ_k w_k D_k, Adam — the library's route with none of its
  bookkeeping (the recording's hooks, the walk of the heads' graph, the hooks that keep each
  head's gradient at the trunk's output in place of the views, the checks). ``--phases`` prints
  where its time goes, phase by phase.

Columns: ms per step, the ratio to ew's, backward-pass equivalents — (step − forward) ÷
(ew's step − forward), with the forward pass (losses included) timed on its own: how many of
ew's backward-and-update the method's step costs — and, on the two paths' rows, ``auto`` where
``method.gradients=auto`` (the default) takes that path: the one with fewer estimated
multiply-adds (``GramRecorder.path_costs``) on these shapes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional
from twcore_method_gradcos.rule import GradCos
from twcore_method_ldro.rule import LookaheadDRO
from twcore_model_cnn.model import CNNConfig, ImageTrunk

from twcore.autodiff import GramRecorder
from twcore.orchestration.bench import profile_table

CLASSES = 10


def mlp_trunk() -> tuple[nn.Module, int]:
    """twcore's default ``mlp`` trunk (hidden 128, 128) on flattened 28×28 inputs."""
    layers = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU()
    )
    return layers, 128


def cnn_trunk() -> tuple[nn.Module, int]:
    """twcore's default ``cnn`` trunk on 1×28×28 images."""
    trunk = ImageTrunk(CNNConfig(), (1, 28, 28), 3)
    return trunk, trunk.features_size


TRUNKS: dict[str, Callable[[], tuple[nn.Module, int]]] = {"mlp": mlp_trunk, "cnn": cnn_trunk}


class Setup:
    """A trunk, K heads, an optimiser and one fixed batch."""

    def __init__(self, model: str, num: int, batch: int) -> None:
        torch.manual_seed(0)
        self.trunk, width = TRUNKS[model]()
        self.heads = nn.ModuleList(nn.Linear(width, CLASSES) for _ in range(num))
        self.params = [*self.trunk.parameters(), *self.heads.parameters()]
        self.shared = list(self.trunk.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=1e-3)
        self.inputs = torch.randn(batch, 1, 28, 28)
        self.labels = torch.randint(0, CLASSES, (num, batch))

    def recorder(self) -> GramRecorder:
        """A Gram recorder of the whole model through the trunk's output, as the engine's."""
        return GramRecorder(self.shared, [self.trunk, self.heads], cut=self.trunk)

    def losses(self) -> Tensor:
        features = self.trunk(self.inputs)
        return torch.stack(
            [
                functional.cross_entropy(head(features), labels)
                for head, labels in zip(self.heads, self.labels, strict=True)
            ]
        )


Step = Callable[[Setup], None]


def ew_step(setup: Setup) -> None:
    setup.optimizer.zero_grad(set_to_none=True)
    setup.losses().mean().backward()
    setup.optimizer.step()


def forward_only(setup: Setup) -> None:
    setup.losses()


def rule_step(make: Callable[[int], object], path: str) -> Callable[[Setup], Step]:
    """A step calling a rule as the engine does, on the `path` ("rows" or "gram")."""

    def bind(setup: Setup) -> Step:
        rule = make(len(setup.heads))
        recorder = setup.recorder() if path == "gram" else None
        if recorder is not None:
            recorder.tally_others = False  # as the engine's, once its path is chosen

        def step(setup: Setup) -> None:
            with recorder if recorder is not None else nullcontext():
                losses = setup.losses()
            setup.optimizer.zero_grad(set_to_none=True)
            extra = {"gram": recorder} if recorder is not None else {}
            rule.backward(losses, setup.shared, params=setup.params, **extra)  # type: ignore[attr-defined]
            if recorder is not None:
                recorder.clear()
            setup.optimizer.step()

        return step

    return bind


def floor_step(setup: Setup) -> Step:
    """ew's step plus K − 1 cotangents through the trunk (see the module docstring)."""
    first = next(m for m in setup.trunk.modules() if list(m.parameters(recurse=False)))
    width = setup.heads[0].in_features
    generator = torch.Generator().manual_seed(1)
    further = max(len(setup.heads) - 1, 1)
    cotangents = torch.randn(further, len(setup.inputs), width, generator=generator)

    def step(setup: Setup) -> None:
        captured: list[Tensor] = []
        hook = first.register_forward_hook(lambda module, inputs, output: captured.append(output))
        try:
            features = setup.trunk(setup.inputs)
        finally:
            hook.remove()
        loss = torch.stack(
            [
                functional.cross_entropy(head(features), labels)
                for head, labels in zip(setup.heads, setup.labels, strict=True)
            ]
        ).mean()
        setup.optimizer.zero_grad(set_to_none=True)
        torch.autograd.grad(
            features, captured[0], cotangents, is_grads_batched=True, retain_graph=True
        )
        loss.backward()
        setup.optimizer.step()

    return step


PHASES = ("forward", "heads", "cotangents", "shares", "weights", "combine", "optimiser")


def arithmetic_step(
    setup: Setup, rule: GradCos, clock: dict[str, float] | None = None
) -> tuple[Tensor, Tensor]:
    """`rule`'s Gram-path step on the mlp written out by hand (see the module docstring); with
    `clock`, each phase's seconds are added to it. Returns the Gram matrix and the weights."""
    started = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal started
        if clock is not None:
            now = time.perf_counter()
            clock[phase] = clock.get(phase, 0.0) + now - started
            started = now

    num = len(setup.heads)
    layers: list[tuple[nn.Linear, Tensor, Tensor]] = []  # (layer, input, output)
    hidden = setup.inputs
    for module in setup.trunk:
        output = module(hidden)
        if isinstance(module, nn.Linear):
            layers.append((module, hidden.detach(), output))
        hidden = output
    views = [hidden.view_as(hidden) for _ in setup.heads]
    losses = torch.stack(
        [
            functional.cross_entropy(head(view), labels)
            for head, view, labels in zip(setup.heads, views, setup.labels, strict=True)
        ]
    )
    setup.optimizer.zero_grad(set_to_none=True)
    lap("forward")
    head_params = list(setup.heads.parameters())
    found = torch.autograd.grad(losses.sum(), [*views, *head_params], retain_graph=True)
    cotangents = torch.stack(found[:num])
    lap("heads")
    outputs = torch.autograd.grad(  # the graph kept, as the library keeps it
        hidden,
        [output for _, _, output in layers],
        cotangents,
        is_grads_batched=True,
        retain_graph=True,
    )
    lap("cotangents")
    gram = torch.zeros(num, num)
    for (_, rows, _), grads in zip(layers, outputs, strict=True):
        kernel = rows @ rows.T
        kernel += 1
        gram += torch.matmul(kernel, grads).flatten(1) @ grads.flatten(1).T
    lap("shares")
    weights, _ = rule.coefficients(gram.double(), losses.detach().double())
    weights = weights.float()
    lap("weights")
    for (layer, rows, _), grads in zip(layers, outputs, strict=True):
        combined = (weights @ grads.flatten(1)).view(grads.shape[1:])
        layer.weight.grad = combined.T @ rows
        layer.bias.grad = combined.sum(dim=0)
    for param, grad in zip(head_params, found[num:], strict=True):
        param.grad = grad
    lap("combine")
    setup.optimizer.step()
    lap("optimiser")
    return gram, weights


def arithmetic(setup: Setup) -> Step:
    """:func:`arithmetic_step` as a configuration: a trunk of linear layers and elementwise
    functions only, where the library takes the same route on these shapes and K (each linear
    layer's share from its rows' kernel, one pass through the heads)."""
    trunk = setup.trunk
    if not isinstance(trunk, nn.Sequential) or not all(
        isinstance(m, nn.Linear) or not list(m.parameters()) for m in trunk
    ):
        raise ValueError("the hand-written arithmetic covers the mlp trunk only")
    recorder = setup.recorder()
    with recorder:
        losses = setup.losses()
    recorder.gram(losses)
    linears = [id(m) for m in trunk if isinstance(m, nn.Linear)]
    if [id(m) for m in recorder.kernel_layers] != linears or not recorder.used_readers:
        raise ValueError(
            "on these shapes and K the library takes another route than the hand-written one "
            "(a layer differentiated directly, or a pass per loss)"
        )
    recorder.clear()
    rule = GradCos(len(setup.heads), main=0)

    def step(setup: Setup) -> None:
        arithmetic_step(setup, rule)

    return step


def auto_choice(setup: Setup) -> str:
    """The path ``gradients=auto`` takes on this setup's shapes and K (a recorder of the whole
    model through the trunk's output, as the engine's)."""
    recorder = setup.recorder()
    with recorder:
        losses = setup.losses()
    choice = recorder.path_costs(losses).cheaper
    recorder.clear()
    return choice


CONFIGURATIONS: dict[str, Callable[[Setup], Step]] = {
    "ew": lambda setup: ew_step,
    "floor (ew + K − 1 cotangents through the trunk)": floor_step,
    "gradcos (rows)": rule_step(lambda k: GradCos(k, main=0), "rows"),
    "gradcos (gram)": rule_step(lambda k: GradCos(k, main=0), "gram"),
    "ldro k=1 (rows)": rule_step(lambda k: LookaheadDRO(k, interaction_every=1), "rows"),
    "ldro k=1 (gram)": rule_step(lambda k: LookaheadDRO(k, interaction_every=1), "gram"),
    "gradcos arithmetic (by hand, no bookkeeping)": arithmetic,
}
ONLY_ON = {"gradcos arithmetic (by hand, no bookkeeping)": {"mlp"}}
"""Configurations that exist for some models only."""


def seconds_per_step(setup: Setup, step: Step, steps: int, repeats: int) -> float:
    """The fastest of `repeats` runs of `steps` steps, per step (one warm-up step first)."""
    step(setup)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            step(setup)
        best = min(best, (time.perf_counter() - started) / steps)
    return best


def measure(model: str, num: int, options: argparse.Namespace) -> list[str]:
    """The table rows of one model and K."""
    setup = Setup(model, num, options.batch)
    forward = seconds_per_step(setup, forward_only, options.steps, options.repeats)
    times = {}
    for name, bind in CONFIGURATIONS.items():
        if model not in ONLY_ON.get(name, {model}):
            continue
        try:
            step = bind(setup)
        except ValueError as error:  # a reference that does not cover these shapes
            print(f"{name} on {model}, K = {num}: left out, {error}", file=sys.stderr)
            continue
        times[name] = seconds_per_step(setup, step, options.steps, options.repeats)
    choice = auto_choice(setup)
    rows = []
    for name, seconds in times.items():
        ratio = seconds / times["ew"]
        equivalents = (seconds - forward) / (times["ew"] - forward)
        auto = "auto" if name.endswith(f"({choice})") else ""
        rows.append(
            f"| {model} | {num} | {name} | {1000 * seconds:.2f} | {ratio:.2f} | {equivalents:.1f} "
            f"| {auto} |"
        )
    return rows


def profile(model: str, num: int, name: str, options: argparse.Namespace) -> str:
    """Where the time of `options.steps` steps of one configuration goes (after three warm-up
    steps), as markdown."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    setup = Setup(model, num, options.batch)
    step = CONFIGURATIONS[name](setup)
    for _ in range(3):
        step(setup)
    with torch_profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(options.steps):
            step(setup)
    table = profile_table(profiler.key_averages(), options.steps)
    return f"{name} on {model}, K = {num}: {table}"


def phases(num: int, options: argparse.Namespace) -> list[str]:
    """Where the hand-written step's time goes on the mlp for K = `num`: ms per step by phase,
    the mean over ``--repeats`` × ``--steps`` steps after a warm-up step, next to ew's mean
    step over as many steps, the two interleaved run by run."""
    setup = Setup("mlp", num, options.batch)
    arithmetic(setup)  # refuses shapes where the library takes another route
    rule = GradCos(num, main=0)
    clock: dict[str, float] = {}
    ew = 0.0
    arithmetic_step(setup, rule)
    ew_step(setup)
    for _ in range(options.repeats):
        started = time.perf_counter()
        for _ in range(options.steps):
            ew_step(setup)
        ew += time.perf_counter() - started
        for _ in range(options.steps):
            arithmetic_step(setup, rule, clock)
    count = options.repeats * options.steps
    per_step, ew = sum(clock.values()) / count, ew / count
    cells = " | ".join(f"{1000 * clock[phase] / count:.2f}" for phase in PHASES)
    return [f"| {num} | {cells} | {1000 * per_step:.2f} | {1000 * ew:.2f} | {per_step / ew:.2f} |"]


def recording(num: int, options: argparse.Namespace) -> list[str]:
    """What the Gram recording (a recorder of the whole model through the trunk's output, as
    the engine's) adds to the mlp's forward pass, losses included, for K = `num`: ms per pass
    without and with it, the mean over ``--repeats`` × ``--steps`` passes after a warm-up, the
    two interleaved run by run."""
    setup = Setup("mlp", num, options.batch)
    recorder = setup.recorder()
    recorder.tally_others = False

    def recorded(setup: Setup) -> None:
        with recorder:
            setup.losses()
        recorder.clear()

    spent = {"plain": 0.0, "recorded": 0.0}
    forward_only(setup)
    recorded(setup)
    for _ in range(options.repeats):
        for name, step in (("plain", forward_only), ("recorded", recorded)):
            started = time.perf_counter()
            for _ in range(options.steps):
                step(setup)
            spent[name] += time.perf_counter() - started
    count = options.repeats * options.steps
    plain, with_recording = (1000 * spent[name] / count for name in ("plain", "recorded"))
    return [f"| {num} | {plain:.3f} | {with_recording:.3f} | {with_recording - plain:.3f} |"]


def _per_k_table(
    options: argparse.Namespace,
    flag: str,
    what: str,
    unit: str,
    columns: list[str],
    rows: Callable[[int, argparse.Namespace], list[str]],
) -> int:
    """Print (and write to ``--out``) a table of `rows` for each of ``--ks`` under a line
    saying `what` it measures and the command that measured it."""
    lines = [
        f"{what}; batch {options.batch}, {options.threads} thread(s), {options.repeats} × "
        f"{options.steps} {unit} (`python3 benchmarks/gram_weighting.py {flag} --repeats "
        f"{options.repeats} --steps {options.steps}`).",
        "",
        "| K | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for num in options.ks:
        lines += rows(num, options)
    print("\n".join(lines))
    if options.out is not None:
        options.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 5, 10, 20])
    parser.add_argument("--models", nargs="+", choices=sorted(TRUNKS), default=["mlp", "cnn"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    parser.add_argument(
        "--profile",
        nargs=3,
        metavar=("MODEL", "K", "METHOD"),
        default=None,
        help="instead of the table, where the time of one configuration's step goes, e.g. "
        '--profile mlp 20 "gradcos (gram)"',
    )
    parser.add_argument(
        "--phases",
        action="store_true",
        help="instead of the table, where the hand-written Gram-path step's time goes on the "
        "mlp, for each of --ks",
    )
    parser.add_argument(
        "--recording",
        action="store_true",
        help="instead of the table, what the Gram recording adds to the mlp's forward pass, "
        "for each of --ks",
    )
    options = parser.parse_args(argv)
    torch.set_num_threads(options.threads)
    if options.recording:
        columns = ["plain", "recorded", "difference"]
        what = (
            "The mlp's forward pass, losses included, without and with the Gram recording, "
            "ms per pass"
        )
        return _per_k_table(options, "--recording", what, "passes", columns, recording)
    if options.phases:
        columns = [*PHASES, "total", "ew", "÷ ew"]
        what = "The hand-written GradCos step on the mlp, ms per step by phase"
        return _per_k_table(options, "--phases", what, "steps", columns, phases)
    if options.profile is not None:
        model, num, name = options.profile
        print(profile(model, int(num), name, options))
        return 0
    lines = [
        f"Batch {options.batch}, {options.threads} thread(s), fastest of {options.repeats} × "
        f"{options.steps} steps (`python3 benchmarks/gram_weighting.py --repeats "
        f"{options.repeats} --steps {options.steps}`).",
        "",
        "| model | K | method | ms/step | ÷ ew | backward equivalents | default path |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for model in options.models:
        for num in options.ks:
            rows = measure(model, num, options)
            print("\n".join(rows), flush=True)
            lines += rows
    if options.out is not None:
        options.out.parent.mkdir(parents=True, exist_ok=True)
        options.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
