"""Each method's time per step in a plain PyTorch loop, against plain training's in the same
loop, beside the same comparison through the engine (``twcore bench``), in one process.

    python3 benchmarks/own_loop_overhead.py [--task mnist-aux] [--model mlp] [--steps 300]

The own loop uses the method's public rule on the same task data, model and optimiser as the
engine; "plain" is ``losses.mean().backward()``. TaskMet is left out: its outer iteration
(retraining the model to the metric's fixed point) has no per-step time to compare. Ratios are
the fastest of ``--repeats`` runs.
Two comparisons per method: the ratio to plain training (own loop) and to ``ew`` (engine), and
the overhead in milliseconds per step over that baseline. A rule's own-loop overhead should be
no worse than its engine overhead: the engine adds logging and bookkeeping to both sides (which
is why its ratios are smaller), the own loop adds nothing.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable

import torch
from twcore_method_adalfl import AdaLFL, LearnedObjective
from twcore_method_alphavil import AlphaVIL
from twcore_method_ew import EqualWeighting
from twcore_method_gradcos import GradCos
from twcore_method_group_dro import GroupDRO
from twcore_method_ldro import LookaheadDRO

from twcore.contract.task import stack_objective_losses
from twcore.orchestration.bench import benchmark
from twcore.testing.own_loop import PlainSetup, plain_setup

Step = Callable[[PlainSetup], Callable[[object], None]]


def plain(setup: PlainSetup) -> Callable[[object], None]:
    def step(batch) -> None:
        setup.optimizer.zero_grad(set_to_none=True)
        setup.losses(batch).mean().backward()
        setup.optimizer.step()

    return step


def weighting(make: Callable[[PlainSetup], object], features: bool = False) -> Step:
    def build(setup: PlainSetup) -> Callable[[object], None]:
        rule, model = make(setup), setup.model
        trunk = setup.shared  # found once, as the engine's adapter does

        def step(batch) -> None:
            if features:  # gradients on the trunk's output, as the engine's L-DRO default
                shared = [model.features(batch.inputs)]
                losses = stack_objective_losses(setup.task, model.predict_heads(shared[0]), batch)
            else:
                losses, shared = setup.losses(batch), trunk
            setup.optimizer.zero_grad(set_to_none=True)
            rule.backward(losses, shared, params=model.parameters())
            setup.optimizer.step()

        return step

    return build


def alphavil(setup: PlainSetup) -> Callable[[object], None]:
    spec, model, task = setup.spec, setup.model, setup.task
    rule = AlphaVIL(spec.num_objectives, spec.main_index)
    shared = [n for n, _ in model.named_parameters() if n.startswith("trunk.")]
    copies = task.stream("train", 64, seed=1, device="cpu")
    dev = next(task.stream("val", 128, seed=2, device="cpu"))
    names = spec.objective_names

    def loss_at(params, batch, index):
        outputs = torch.func.functional_call(model, params, (batch.inputs,))
        return task.objective_losses(outputs, batch)[names[index]].mean()

    count = {"steps": 0, "epochs": setup.stream.completed_epochs}

    def step(batch) -> None:
        setup.optimizer.zero_grad(set_to_none=True)
        rule.backward(setup.losses(batch))
        setup.optimizer.step()
        count["steps"] += 1
        if setup.stream.completed_epochs > count["epochs"]:
            count["epochs"] = setup.stream.completed_epochs
            steps = rule.copy_steps(count["steps"])
            rule.epoch_update(
                model, shared, batches=copies, task_loss=loss_at, dev_batch=dev, steps=steps
            )
            count["steps"] = 0

    return step


def adalfl(setup: PlainSetup) -> Callable[[object], None]:
    objectives = [LearnedObjective(o.kind, o.head, o.target) for o in setup.spec.objectives]
    rule = AdaLFL(objectives, one_step_late=True)
    return lambda batch: rule.step(setup.model, setup.optimizer, batch)


METHODS: dict[str, Step] = {
    "ew": weighting(lambda s: EqualWeighting(s.spec.num_objectives)),
    "gradcos": weighting(lambda s: GradCos(s.spec.num_objectives, s.spec.main_index)),
    "ldro": weighting(lambda s: LookaheadDRO(s.spec.num_objectives), features=True),
    "group-dro": weighting(lambda s: GroupDRO(s.spec.num_objectives)),
    "alphavil": alphavil,
    "adalfl": adalfl,
}


def seconds_per_step(build: Step, options: dict, steps: int) -> float:
    setup = plain_setup(options)
    step = build(setup)
    began = time.perf_counter()
    for batch in itertools.islice(setup.stream, steps):
        step(batch)
    return (time.perf_counter() - began) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist-aux")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    options = {"task": arguments.task, "model": arguments.model, "batch_size": 64}
    own = {name: float("inf") for name in ["plain", *METHODS]}
    builders: dict[str, Step] = {"plain": plain, **METHODS}
    for _ in range(arguments.repeats):
        for name, build in builders.items():
            own[name] = min(own[name], seconds_per_step(build, options, arguments.steps))
    engine = benchmark(
        [f"task={arguments.task}", f"model={arguments.model}"],
        list(METHODS),
        steps=arguments.steps,
        repeats=arguments.repeats,
        baseline="ew",
    )
    print(
        f"{arguments.task}, {arguments.model}, {arguments.steps} steps, best of "
        f"{arguments.repeats}, {torch.get_num_threads()} threads"
    )
    print(
        "| method | own loop ms/step | ÷ plain | overhead ms | engine ms/step | ÷ ew | "
        "overhead ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in METHODS:
        mine, theirs = own[name], engine.seconds[name]
        print(
            f"| {name} | {1000 * mine:.2f} | {mine / own['plain']:.2f} | "
            f"{1000 * (mine - own['plain']):.2f} | {1000 * theirs:.2f} | "
            f"{engine.ratio(name):.2f} | {1000 * (theirs - engine.seconds['ew']):.2f} |"
        )


if __name__ == "__main__":
    main()
