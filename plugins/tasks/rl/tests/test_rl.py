"""The RL plugin: environments, replay, Bellman targets, the gridworld-aux task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from twcore_task_rl import (
    DistractorObservation,
    GridWorld,
    ReplayBuffer,
    cartpole_with_distractors,
    q_learning_targets,
    soft_q_targets,
)
from twcore_task_rl.conformance import EnvironmentTaskConformance
from twcore_task_rl.soft_q import cartpole_done

import twcore
from twcore.contract.errors import ConfigError
from twcore.orchestration.config.compose import compose
from twcore.testing import MethodConformance, TaskConformance, plugin_harness

FAST = {"warmup": 64, "exploration_steps": 200, "target_update": 10}


class TestGridworldAuxConformance(EnvironmentTaskConformance):
    task = "gridworld-aux"
    task_options = FAST


class TestGradCosOnGridworldAux(MethodConformance):
    """A main/auxiliary method on an environment task: exact resume includes the replay."""

    method = "gradcos"
    task = "gridworld-aux"
    task_options = FAST


# -- the gridworld ---------------------------------------------------------------------------


def test_gridworld_moves_walls_lava_and_goal() -> None:
    env = GridWorld(max_steps=50, step_cost=0.01)
    env.reset(seed=0)
    env.position = np.array([0, 0])
    observation, reward, terminated, truncated, _ = env.step(1)  # down to (1, 0)
    assert env.cell == 7 and observation[7] == 1.0 and observation.sum() == 1.0
    assert reward == pytest.approx(-0.01) and not terminated and not truncated
    env.step(3)  # right into the wall at (1, 1): stays
    assert env.cell == 7
    env.position = np.array([3, 0])
    _, reward, terminated, _, _ = env.step(3)  # lava at (3, 1)
    assert reward == -1.0 and terminated
    env.position = np.array([6, 5])
    _, reward, terminated, _, _ = env.step(3)  # the goal at (6, 6)
    assert reward == 1.0 and terminated
    with pytest.raises(ValueError, match="action 7"):
        env.step(7)


def test_gridworld_truncates_and_seeds_its_starts() -> None:
    env = GridWorld(max_steps=3)
    starts = {tuple(GridWorld().reset(seed=s)[0].nonzero()[0]) for s in range(30)}
    assert len(starts) > 5  # starts vary with the seed
    first, _ = env.reset(seed=4)
    again, _ = GridWorld(max_steps=3).reset(seed=4)
    assert np.array_equal(first, again)
    env.position = np.array([0, 0])
    outcomes = [env.step(2)[3] for _ in range(3)]  # left into the edge, three times
    assert outcomes == [False, False, True]


def test_gridworld_state_round_trips() -> None:
    env = GridWorld()
    env.reset(seed=1)
    env.step(1)
    state = env.get_state()
    expected = [env.reset()[0] for _ in range(3)]
    other = GridWorld()
    other.reset(seed=99)
    other.set_state(state)
    assert all(np.array_equal(other.reset()[0], e) for e in expected)


# -- CartPole with distractors ---------------------------------------------------------------


def test_distractors_extend_the_observation_and_leave_the_state_alone() -> None:
    plain = cartpole_with_distractors(0)
    noisy = cartpole_with_distractors(32)
    assert noisy.observation_space.shape == (36,)
    first, _ = plain.reset(seed=3)
    second, _ = noisy.reset(seed=3)
    assert second.shape == (36,) and np.array_equal(first, second[:4])
    for action in [0, 1, 1, 0, 1]:  # the true dimensions follow the same episode
        a = plain.step(action)[0]
        b = noisy.step(action)[0]
        assert np.array_equal(a, b[:4])


def test_distractors_are_seeded_standard_normal_and_independent_of_the_state() -> None:
    env = cartpole_with_distractors(8)
    rows = []
    for episode in range(20):
        observation, _ = env.reset(seed=episode)
        rows.append(observation)
        for _ in range(20):
            observation, _, terminated, truncated, _ = env.step(episode % 2)
            rows.append(observation)
            if terminated or truncated:
                break
    data = np.array(rows)
    noise, state = data[:, 4:], data[:, :4]
    assert abs(noise.mean()) < 0.1 and abs(noise.std() - 1) < 0.1
    correlation = np.corrcoef(np.concatenate([state, noise], axis=1).T)[:4, 4:]
    assert np.abs(correlation).max() < 0.2
    again = cartpole_with_distractors(8)
    assert np.array_equal(again.reset(seed=0)[0], env.reset(seed=0)[0])
    with pytest.raises(ValueError, match="distractors=-1"):
        DistractorObservation(cartpole_with_distractors(0), -1)


# -- replay and Bellman targets --------------------------------------------------------------


def test_replay_buffer_overwrites_the_oldest_and_samples_what_it_holds() -> None:
    replay = ReplayBuffer(capacity=3, observation_shape=2)
    for step in range(5):
        replay.add(torch.full((2,), float(step)), step % 4, float(step), torch.zeros(2), step == 4)
    assert len(replay) == 3
    assert sorted(replay.data["reward"].tolist()) == [2.0, 3.0, 4.0]
    sample = replay.sample(50, torch.Generator().manual_seed(0))
    assert set(sample["reward"].tolist()) == {2.0, 3.0, 4.0}
    assert torch.equal(sample["observation"][:, 0], sample["reward"])
    assert torch.equal(sample["terminated"], (sample["reward"] == 4.0).float())
    other = ReplayBuffer(capacity=3, observation_shape=2)
    other.load_state_dict(replay.state_dict())
    expected = replay.sample(4, torch.Generator().manual_seed(1))
    restored = other.sample(4, torch.Generator().manual_seed(1))
    assert all(torch.equal(value, restored[key]) for key, value in expected.items())
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(2, 1).sample(1, torch.Generator())


def test_replay_buffer_stores_frames_as_bytes_exactly() -> None:
    replay = ReplayBuffer(capacity=2, observation_shape=(2, 3, 3), observation_dtype=torch.uint8)
    frame = torch.arange(18, dtype=torch.uint8).reshape(2, 3, 3) * 14
    replay.add(frame, 1, 0.5, frame.flip(0), False)
    sample = replay.sample(4, torch.Generator().manual_seed(0))
    assert sample["observation"].dtype == torch.uint8
    assert torch.equal(sample["observation"][0], frame)
    assert torch.equal(sample["next_observation"][0], frame.flip(0))


def test_bellman_targets_match_hand_computed_values() -> None:
    rewards = torch.tensor([1.0, -0.5, 0.0])
    terminated = torch.tensor([0.0, 1.0, 0.0])
    next_q = torch.tensor([[0.2, 0.8], [5.0, 3.0], [-1.0, -2.0]])
    expected = torch.tensor([1.0 + 0.9 * 0.8, -0.5, 0.9 * -1.0])
    torch.testing.assert_close(q_learning_targets(rewards, terminated, next_q, 0.9), expected)
    soft = soft_q_targets(rewards, terminated, next_q, 0.9, temperature=0.5)
    value = 0.5 * np.log(np.exp(0.2 / 0.5) + np.exp(0.8 / 0.5))
    assert float(soft[0]) == pytest.approx(1.0 + 0.9 * value)
    assert float(soft[1]) == pytest.approx(-0.5)
    cold = soft_q_targets(rewards, terminated, next_q, 0.9, temperature=1e-4)
    torch.testing.assert_close(cold, expected, atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="temperature"):
        soft_q_targets(rewards, terminated, next_q, 0.9, temperature=0.0)


# -- the task --------------------------------------------------------------------------------


def _harness():
    return plugin_harness(
        "ew", task="gridworld-aux", options={f"task.{k}": v for k, v in FAST.items()}
    )


def test_batches_carry_q_learning_targets_from_the_target_network() -> None:
    harness = _harness()
    stream, model = harness.stream, harness.components.model
    batch = next(stream)
    assert len(stream.replay) == FAST["warmup"] + 1  # warm-up, then one step per batch
    context = batch.context
    # At first the target network equals the model: recompute the targets by hand.
    with torch.no_grad():
        next_values = model(context["next_observation"])["q"].max(dim=1).values
    expected = context["reward"] + 0.95 * (1 - context["terminated"]) * next_values
    torch.testing.assert_close(batch.targets["td"], expected)
    assert torch.equal(batch.targets["reward"], context["reward"])
    cells = batch.inputs.argmax(dim=1)  # the random target is a fixed function of the cell
    torch.testing.assert_close(batch.targets["random"], harness.components.task.random_table[cells])
    assert ((context["action"] >= 0) & (context["action"] < 4)).all()


def test_the_target_network_copies_the_model_every_target_update_batches() -> None:
    harness = _harness()
    stream, model = harness.stream, harness.components.model
    initial = [p.detach().clone() for p in model.parameters()]
    harness.steps(9)
    assert all(torch.equal(t, p) for t, p in zip(stream.target.parameters(), initial, strict=True))
    after_nine = [p.detach().clone() for p in model.parameters()]
    harness.steps(1)  # the 10th batch copies the model (as of 9 updates), then it updates
    copied = list(stream.target.parameters())
    assert all(torch.equal(t, p) for t, p in zip(copied, after_nine, strict=True))
    assert not all(torch.equal(t, p) for t, p in zip(copied, model.parameters(), strict=True))


def test_exploration_falls_linearly_to_its_final_rate() -> None:
    stream = _harness().stream
    stream.env_steps = 0
    assert stream.epsilon() == 1.0
    stream.env_steps = 100
    assert stream.epsilon() == pytest.approx(1.0 - 0.5 * 0.95)
    stream.env_steps = 10_000
    assert stream.epsilon() == pytest.approx(0.05)


def test_training_solves_the_gridworld_without_auxiliaries(tmp_path) -> None:
    result = twcore.run(
        [
            "method=ew",
            "task=gridworld-aux",
            "task.auxiliaries=[]",
            "steps=1500",
            "eval_every=0",
            "wandb.enabled=false",
            f"run_dir={tmp_path / 'run'}",
        ]
    )
    test = result.metrics["test"]
    assert test["success"] >= 0.9 and test["return"] > 0.8


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "task.auxiliaries=[noise]",
            r"^task\.auxiliaries=\[noise\] holds 'noise': each element must be one of reward, ",
        ),
        ("task.gamma=1.5", r"^task\.gamma=1\.5 must be > 0 and < 1$"),
        ("task.eval_episodes=3", r"^task\.eval_episodes=3 must be >= 10$"),
    ],
)
def test_bad_options_are_config_errors(tmp_path, override, message) -> None:
    with pytest.raises(ConfigError, match=message):
        twcore.run(["task=gridworld-aux", override, f"run_dir={tmp_path / 'r'}"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task=gridworld-aux", "task.max_steps=0"], r"^task\.max_steps=0 must be >= 1$"),
        (["task=gridworld-aux", "task.gamma=inf"], r"^task\.gamma=inf must be a finite number"),
        (
            ["task=gridworld-aux", "task.auxiliaries=[random,random]"],
            r"^task 'gridworld-aux' options are invalid: auxiliaries=\['random', 'random'\] "
            "repeats a name",
        ),
        (
            ["task=cartpole-distractors", "task.distractors=-1"],
            r"^task\.distractors=-1 must be >= 0$",
        ),
        (["task=cartpole-distractors", "task.gamma=0"], r"^task\.gamma=0\.0 must be > 0 and < 1$"),
        (
            ["task=cartpole-distractors", "task.eval_episodes=9"],
            r"^task\.eval_episodes=9 must be >= 10$",
        ),
        (
            ["task=cartpole-distractors", "task.agent_hidden=0"],
            r"^task\.agent_hidden=0 must be >= 1$",
        ),
    ],
)
def test_the_composer_refuses_a_bad_option_naming_its_key(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        compose(overrides)


def test_the_boundary_values_of_the_constraints_are_accepted() -> None:
    options = compose(["task=cartpole-distractors", "task.distractors=0", "task.eval_episodes=10"])
    assert (options.sections["task"].distractors, options.sections["task"].eval_episodes) == (0, 10)
    assert compose(["task=gridworld-aux", "task.auxiliaries=[]"]).sections["task"].auxiliaries == []


# -- CartPole with distractors, model-based ---------------------------------------------------

CARTPOLE = {"distractors": 3, "warmup": 100, "capacity": 2000}


class TestCartpoleDistractorsConformance(TaskConformance):
    task = "cartpole-distractors"
    task_options = CARTPOLE

    def test_stream_resumes_where_it_stopped(self) -> None:
        """The data state (environment, replay, agent) lives in the task, as the engine's
        checkpoints keep it: restore the task's state and the stream's."""
        harness = self.harness()
        for _ in range(3):
            next(harness.stream)
        task_state = harness.components.task.state_dict()
        stream_state = harness.stream.state_dict()
        expected = [next(harness.stream) for _ in range(2)]
        other = self.harness()
        other.components.task.load_state_dict(task_state)
        other.stream.load_state_dict(stream_state)
        for batch in expected:
            torch.testing.assert_close(next(other.stream).inputs, batch.inputs, rtol=0, atol=0)

    def test_splits_share_no_examples(self) -> None:
        from twcore_task_rl.cartpole_model import EVAL_SEEDS as SEEDS

        count = self.harness().components.task.config.eval_episodes
        assert not set(range(SEEDS["val"], SEEDS["val"] + count)) & set(
            range(SEEDS["test"], SEEDS["test"] + count)
        )


class TestTaskMetOnCartpoleDistractors(MethodConformance):
    method = "taskmet"
    task = "cartpole-distractors"
    task_options = CARTPOLE
    method_options = {"inner_steps_first": 5, "inner_steps": 3, "validate_every": 2}


class TestDflOnCartpoleDistractors(MethodConformance):
    """DFL trains the model on the task loss directly: the OMD-style baseline."""

    method = "dfl"
    task = "cartpole-distractors"
    task_options = CARTPOLE


def _cartpole_harness(**options):
    return plugin_harness(
        "ew",
        task="cartpole-distractors",
        options={**{f"task.{k}": v for k, v in CARTPOLE.items()}, **options},
    )


def test_task_loss_gradient_matches_finite_differences() -> None:
    """d L_task / d ŝ' through the one-step Q lookahead, in float64, along a random direction."""
    harness = _cartpole_harness()
    harness.steps(3)
    task = harness.components.task
    batch = next(harness.stream)
    task.agent.double()
    batch.context = {
        k: (v.double() if v.is_floating_point() else v) for k, v in batch.context.items()
    }
    generator = torch.Generator().manual_seed(0)
    base = batch.targets["next_obs"].double() + 0.05 * torch.randn(
        batch.targets["next_obs"].shape, generator=generator, dtype=torch.float64
    )
    direction = torch.randn(base.shape, generator=generator, dtype=torch.float64)

    def loss(predictions: torch.Tensor) -> torch.Tensor:
        decisions = task.decision.decide(predictions, batch)
        return -task.decision.objective(decisions, batch).mean()

    predictions = base.clone().requires_grad_()
    (gradient,) = torch.autograd.grad(loss(predictions), predictions)
    analytic = float((gradient * direction).sum())
    eps = 1e-6
    difference = loss(base + eps * direction) - loss(base - eps * direction)
    numeric = float(difference.detach()) / (2 * eps)
    assert abs(analytic) > 1e-8
    assert analytic == pytest.approx(numeric, rel=1e-5)
    task.config.lookahead_lr = 0.0  # no Q step: the task loss no longer depends on the model
    predictions = base.clone().requires_grad_()
    (flat,) = torch.autograd.grad(loss(predictions), predictions, allow_unused=True)
    assert flat is None or float(flat.abs().max()) == 0.0


@dataclass
class LookaheadProblem:
    """A small float64 CartPole task loss whose Q step can be solved in closed form."""

    task: Any
    batch: Any
    base: torch.Tensor  # predictions ŝ' near the real next observations
    flat: torch.Tensor  # the Q network's parameters ω, flattened
    network: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (ω, inputs) -> Q [N, A]
    chosen: Callable[[torch.Tensor], torch.Tensor]  # flat ω -> Q(s, a) [B]
    regression: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (ω, ŝ') -> its loss

    def newton_decisions(
        self, curvature_of: Callable[[torch.Tensor], torch.Tensor], damping: float
    ):
        """ŝ' -> Q_{ω'}(s, a) with ω' = ω − (M + λI)⁻¹ g, M = curvature_of(ω) (no graph: the
        Gauss–Newton matrix does not depend on ŝ'), or the Hessian where it is None."""

        def decide(predictions: torch.Tensor) -> torch.Tensor:
            vector = self.flat.clone().requires_grad_()
            (gradient,) = torch.autograd.grad(
                self.regression(vector, predictions), vector, create_graph=True
            )
            matrix = (
                curvature_of(vector)
                if curvature_of is not None
                else torch.stack(
                    [
                        torch.autograd.grad(g, vector, retain_graph=True, create_graph=True)[0]
                        for g in gradient
                    ]
                )
            )
            step = torch.linalg.solve(matrix + damping * torch.eye(len(self.flat)), gradient)
            return self.chosen(self.flat - step)

        return decide

    def task_loss_gradients(self, decide) -> tuple[torch.Tensor, torch.Tensor]:
        """(decisions at `base`, the task loss's gradient in ŝ') for a decide function."""
        predictions = self.base.clone().requires_grad_()
        decisions = decide(predictions)
        loss = -self.task.decision.objective(decisions, self.batch).mean()
        (gradient,) = torch.autograd.grad(loss, predictions)
        return decisions.detach(), gradient

    def series(self, predictions: torch.Tensor) -> torch.Tensor:
        return self.task.decision.decide(predictions, self.batch)


def _lookahead_problem() -> LookaheadProblem:
    from torch.func import functional_call

    harness = _cartpole_harness(**{"task.agent_hidden": 4})
    harness.steps(3)
    task = harness.components.task
    batch = next(harness.stream)
    agent = task.agent.double()
    context = {k: (v.double() if v.is_floating_point() else v) for k, v in batch.context.items()}
    batch.context = context
    generator = torch.Generator().manual_seed(1)
    base = batch.targets["next_obs"].double() + 0.05 * torch.randn(
        batch.targets["next_obs"].shape, generator=generator, dtype=torch.float64
    )
    flat = torch.cat([p.detach().reshape(-1) for p in agent.q.parameters()])

    def network(vector: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        named = list(agent.q.named_parameters())  # read afresh: a test may swap the network
        parts = torch.split(vector, [p.numel() for _, p in named])
        parameters = {n: part.reshape(p.shape) for (n, p), part in zip(named, parts, strict=True)}
        return functional_call(agent.q, parameters, (inputs,))

    def chosen(vector: torch.Tensor) -> torch.Tensor:
        values = network(vector, context["observation"])
        return values.gather(1, context["action"].unsqueeze(1)).squeeze(1)

    def regression(vector: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
        done = (predictions[:, 0].abs() > 2.4) | (predictions[:, 2].abs() > 12 * torch.pi / 180)
        value = agent.temperature * torch.logsumexp(
            agent.target(predictions) / agent.temperature, dim=1
        )
        targets = 1 + agent.gamma * (1 - done.double()) * value
        return (chosen(vector) - targets).pow(2).mean()

    return LookaheadProblem(task, batch, base, flat, network, chosen, regression)


def test_many_lookahead_terms_give_the_damped_newton_steps_implicit_gradient() -> None:
    """K terms of the Neumann series converge to ω − (H + λI)⁻¹ g: the decisions and the task
    loss's gradient with respect to ŝ' equal those of that step solved with the explicit
    Hessian (float64, a small Q network); K = 1 is the one-step lookahead ω − η g."""
    problem = _lookahead_problem()
    task, flat = problem.task, problem.flat
    # Away from its optimum the regression's Hessian is indefinite; damping past its most
    # negative eigenvalue makes the step a Newton step on a convex model, whose series converges.
    curvature = torch.autograd.functional.hessian(
        lambda v: problem.regression(v, problem.base), flat
    )
    lowest = float(torch.linalg.eigvalsh(curvature).min())
    assert lowest < 0  # indefinite: without damping the series would diverge
    damping = 1.0 - lowest
    eigenvalues = torch.linalg.eigvalsh(curvature + damping * torch.eye(len(flat)))
    task.config.lookahead_lr = 1.0 / float(eigenvalues.max())
    task.config.lookahead_damping = damping
    task.config.lookahead_terms = 400

    ours = problem.task_loss_gradients(problem.series)
    closed = problem.task_loss_gradients(problem.newton_decisions(None, damping))
    assert torch.allclose(ours[0], closed[0], rtol=1e-7, atol=1e-9)
    assert float(closed[1].abs().max()) > 1e-6
    assert torch.allclose(ours[1], closed[1], rtol=1e-6, atol=1e-9)

    task.config.lookahead_terms = 1  # one gradient step: ω − η g
    vector = flat.clone().requires_grad_()
    (gradient,) = torch.autograd.grad(problem.regression(vector, problem.base), vector)
    one_step = problem.chosen(flat - task.config.lookahead_lr * gradient)
    assert torch.allclose(problem.series(problem.base), one_step, rtol=1e-7, atol=1e-9)


def test_the_gauss_newton_series_converges_from_any_step_to_its_newton_step() -> None:
    """With ``lookahead_curvature=gauss-newton`` the series converges to ω − (G + λI)⁻¹ g, G =
    (2/B) JᵀJ built here from the explicit Jacobian, even from a step η 25 times the largest
    convergent one (the series' step is capped at 1/λ_max, estimated by power iteration): the
    decisions and the task loss's gradient in ŝ' match the closed form (float64). Undamped, G
    is only semidefinite (more parameters than transitions): the series stays finite from
    that step, where an uncapped one would grow as 49^K."""
    problem = _lookahead_problem()
    task, flat = problem.task, problem.flat
    # G from its definition: the Hessian of the mean squared error of the linearised network
    # Q(ω₀) + J(ω − ω₀), whatever its targets.
    jacobian = torch.autograd.functional.jacobian(problem.chosen, flat)
    offset = torch.randn(len(jacobian), dtype=torch.float64)
    gauss_newton = torch.autograd.functional.hessian(
        lambda v: (jacobian @ (v - flat) - offset).pow(2).mean(), flat
    )
    damping = 0.5
    largest = float(torch.linalg.eigvalsh(gauss_newton).max()) + damping
    task.config.lookahead_curvature = "gauss-newton"
    task.config.lookahead_lr = 50.0 / largest
    task.config.lookahead_damping = damping
    task.config.lookahead_terms = 3000
    ours = problem.task_loss_gradients(problem.series)
    closed = problem.task_loss_gradients(problem.newton_decisions(lambda _: gauss_newton, damping))
    assert torch.allclose(ours[0], closed[0], rtol=1e-6, atol=1e-8)
    assert float(closed[1].abs().max()) > 1e-6
    assert torch.allclose(ours[1], closed[1], rtol=1e-5, atol=1e-8)

    task.config.lookahead_damping = 0.0
    task.config.lookahead_terms = 200
    undamped = problem.task_loss_gradients(problem.series)
    assert torch.isfinite(undamped[0]).all() and torch.isfinite(undamped[1]).all()


Condition = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _soft_bellman_condition(problem: LookaheadProblem) -> Condition:
    """(ω, ŝ') -> g = (2/B) Jᵀ(Q(s, a) − y), J = ∂Q(s, a)/∂ω, with the targets y = 1 + γ(1 −
    done(ŝ'))·α log Σ exp(Q_ω(ŝ')/α) bootstrapping from the same ω: the soft-Bellman fixed
    point's condition g = 0, written with the explicit Jacobian (the library differentiates a
    loss in a copy of ω)."""
    agent = problem.task.agent

    def condition(vector: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
        jacobian = torch.autograd.functional.jacobian(
            problem.chosen, vector, create_graph=True, vectorize=True
        )
        done = cartpole_done(predictions.detach())
        value = agent.temperature * torch.logsumexp(
            problem.network(vector, predictions) / agent.temperature, dim=1
        )
        targets = 1 + agent.gamma * (1 - done) * value
        return 2.0 / len(targets) * jacobian.T @ (problem.chosen(vector) - targets)

    return condition


def _fixed_point_jacobian(
    condition: Condition, vector: torch.Tensor, predictions: torch.Tensor
) -> torch.Tensor:
    """M = dg/dω, the total derivative (through the targets too), differentiable in ŝ'."""
    return torch.autograd.functional.jacobian(
        lambda v: condition(v, predictions), vector, create_graph=True, vectorize=True
    )


def test_the_soft_bellman_series_converges_to_the_fixed_point_newton_step() -> None:
    """With ``lookahead_curvature=soft-bellman`` the targets bootstrap from the stepped Q
    network and K terms of the series converge to ω − (M + λI)⁻¹ g, with g the fixed point's
    condition and M = dg/dω its Jacobian (not symmetric: the targets' dependence on ω is in
    it), both written here from the explicit Jacobian of Q (float64, the agent's small ReLU
    network, away from the fixed point): the decisions and the task loss's gradient in ŝ'."""
    problem = _lookahead_problem()
    task, flat = problem.task, problem.flat
    condition = _soft_bellman_condition(problem)
    matrix = _fixed_point_jacobian(condition, flat, problem.base).detach()
    eigenvalues = torch.linalg.eigvals(matrix)
    assert float(eigenvalues.real.min()) < 0  # off the fixed point: undamped, it would diverge
    damping = 1.0 - float(eigenvalues.real.min())
    shifted = eigenvalues + damping
    task.config.lookahead_curvature = "soft-bellman"
    task.config.lookahead_damping = damping
    task.config.lookahead_lr = 1.0 / float(shifted.abs().max())
    assert float((1 - task.config.lookahead_lr * shifted).abs().max()) < 0.9  # it converges
    task.config.lookahead_terms = 300

    def newton(transposed: bool = False):
        def decide(predictions: torch.Tensor) -> torch.Tensor:
            gradient = condition(flat, predictions)
            jacobian = _fixed_point_jacobian(condition, flat, predictions)
            jacobian = jacobian.T if transposed else jacobian
            step = torch.linalg.solve(jacobian + damping * torch.eye(len(flat)), gradient)
            return problem.chosen(flat - step)

        return decide

    ours = problem.task_loss_gradients(problem.series)
    closed = problem.task_loss_gradients(newton())
    assert torch.allclose(ours[0], closed[0], rtol=1e-7, atol=1e-9)
    assert float(closed[1].abs().max()) > 1e-6
    assert torch.allclose(ours[1], closed[1], rtol=1e-6, atol=1e-9)
    # the test sees the order of the product: with Mᵀ in place of M the step is another one
    wrong = problem.task_loss_gradients(newton(transposed=True))
    assert float((wrong[0] - closed[0]).abs().max()) > 1e-3


def test_at_the_soft_bellman_fixed_point_the_series_gives_the_implicit_gradient() -> None:
    """OMD's gradient: at the fixed point ω*(ŝ') of the soft-Bellman regression, the
    undamped series' task-loss gradient in ŝ' equals the finite difference of the task loss
    at fixed points solved afresh (by Newton's method) for ŝ' ± εd. A linear Q network on
    standardised states (so that M is well conditioned and the series converges in few
    terms), γ = 0.5, float64."""
    problem = _lookahead_problem()
    task, batch = problem.task, problem.batch
    agent = task.agent
    generator = torch.Generator().manual_seed(2)
    size = batch.context["observation"].shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        agent.q = torch.nn.Linear(size, 2).double()
    agent.gamma = 0.5
    batch.context["observation"] = torch.randn(
        batch.context["observation"].shape, generator=generator, dtype=torch.float64
    )
    # ŝ' inside CartPole's bounds but for every third, whose cart is out (terminal): with
    # reward 1 everywhere and no termination, the constant Q would be the fixed point whatever ŝ'
    base = 0.3 * torch.randn(problem.base.shape, generator=generator, dtype=torch.float64)
    base[:, :4] *= 0.1
    base[::3, 0] = 3.0
    problem.base = base
    problem.flat = torch.cat([p.detach().reshape(-1) for p in agent.q.parameters()])
    condition = _soft_bellman_condition(problem)

    def fixed_point(predictions: torch.Tensor) -> torch.Tensor:
        vector = problem.flat.clone()
        for _ in range(30):
            gradient = condition(vector, predictions).detach()
            if float(gradient.abs().max()) < 1e-14:
                return vector
            jacobian = _fixed_point_jacobian(condition, vector, predictions).detach()
            vector = vector - torch.linalg.solve(jacobian, gradient)
        raise AssertionError("Newton's method did not reach the fixed point")

    def task_loss(vector: torch.Tensor) -> float:
        decisions = problem.chosen(vector)
        return float(-task.decision.objective(decisions, batch).mean())

    solved = fixed_point(base)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(solved, agent.q.parameters())
    eigenvalues = torch.linalg.eigvals(_fixed_point_jacobian(condition, solved, base).detach())
    assert float(eigenvalues.real.min()) > 0.05  # the series converges undamped
    task.config.lookahead_curvature = "soft-bellman"
    task.config.lookahead_damping = 0.0
    task.config.lookahead_lr = 1.0
    task.config.lookahead_terms = 300
    decisions, gradient = problem.task_loss_gradients(problem.series)
    # g = 0 here, so the step is nil; what the fixed point tests is the gradient below
    torch.testing.assert_close(decisions, problem.chosen(solved).detach(), rtol=1e-10, atol=1e-10)

    direction = torch.randn(base.shape, generator=generator, dtype=torch.float64)
    eps = 1e-5
    numeric = (
        task_loss(fixed_point(base + eps * direction))
        - task_loss(fixed_point(base - eps * direction))
    ) / (2 * eps)
    analytic = float((gradient * direction).sum())
    assert abs(analytic) > 1e-6
    assert analytic == pytest.approx(numeric, rel=1e-5)


def test_a_diverging_series_gives_nan_decisions_so_that_no_step_is_built_on_it() -> None:
    """Undamped at an indefinite point, the Hessian's series grows along its negative
    eigenvalue, whatever the cap: its last term outgrows its first, and the decisions are NaN
    (TaskMet skips such an outer step); damped past that eigenvalue it converges, finite. So
    does the soft-Bellman series; the Gauss–Newton one never diverges (its test)."""
    problem = _lookahead_problem()
    task = problem.task
    task.config.lookahead_lr = 1.0
    task.config.lookahead_terms = 200
    assert torch.isnan(problem.series(problem.base)).all()
    curvature = torch.autograd.functional.hessian(
        lambda v: problem.regression(v, problem.base), problem.flat
    )
    task.config.lookahead_damping = 1.0 - float(torch.linalg.eigvalsh(curvature).min())
    assert torch.isfinite(problem.series(problem.base)).all()
    # The soft-Bellman Jacobian there has an eigenvalue of negative real part (the soft-Bellman
    # series test asserts it): undamped, its series diverges too.
    task.config.lookahead_curvature = "soft-bellman"
    task.config.lookahead_damping = 0.0
    assert torch.isnan(problem.series(problem.base)).all()


def test_power_iteration_finds_the_largest_curvature() -> None:
    """Power iteration estimates the largest eigenvalue magnitude, also from a start orthogonal
    to its eigenvector (mixed with a fixed random direction); a zero matrix gives 0 (no cap),
    a non-finite start or product inf (no step)."""
    from twcore_task_rl.cartpole_model import largest_curvature

    matrix = torch.diag(torch.tensor([0.5, -3.0, 2.0], dtype=torch.float64))

    def times(v: list[torch.Tensor], *, graph: bool = True) -> list[torch.Tensor]:
        return [matrix @ v[0]]

    def nothing(v: list[torch.Tensor], *, graph: bool = True) -> list[torch.Tensor]:
        return [0 * v[0]]

    ones = [torch.ones(3, dtype=torch.float64)]
    orthogonal = [torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)]
    assert largest_curvature(times, ones) == pytest.approx(3.0, rel=1e-3)
    assert largest_curvature(times, orthogonal) == pytest.approx(3.0, rel=1e-3)
    huge = [1e300 * torch.ones(3, dtype=torch.float64)]  # its squares overflow
    assert largest_curvature(times, huge) == pytest.approx(3.0, rel=1e-3)
    assert largest_curvature(nothing, ones) == 0.0
    assert largest_curvature(times, [torch.full((3,), float("nan"))]) == float("inf")


def test_a_diverged_soft_q_agent_neither_updates_on_non_finite_targets_nor_stops_acting() -> None:
    from twcore_task_rl.soft_q import SoftQAgent

    agent = SoftQAgent(4, 2, hidden=8, lr=1e-2, temperature=0.05, gamma=0.99, polyak=0.5, seed=0)
    before = {k: v.clone() for k, v in agent.agent_state()["q"].items()}
    observations, actions = torch.randn(6, 4), torch.tensor([0, 1, 0, 1, 0, 1])
    targets = torch.tensor([1.0, float("nan"), 1.0, 1.0, float("inf"), 1.0])
    assert not np.isfinite(agent.update(observations, actions, targets))
    after = agent.agent_state()["q"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        agent.q[-1].bias.fill_(float("nan"))
    generator = torch.Generator().manual_seed(0)
    picked = {agent.act(torch.zeros(4), generator) for _ in range(40)}
    assert picked == {0, 1}  # uniformly random instead of a crash in multinomial


def test_a_diverged_agents_evaluation_leaves_the_training_stream_alone() -> None:
    """Evaluating a diverged agent (random actions) draws from each episode's own generator:
    the training stream's generator is where it was, and the evaluation is repeatable."""
    harness = _cartpole_harness()
    harness.steps(2)
    task = harness.components.task
    with torch.no_grad():
        task.agent.q[-1].bias.fill_(float("nan"))
    before = task.generator.get_state()
    evaluate = harness.components.task.evaluate
    model, device = harness.components.model, harness.components.device
    first = evaluate(model, "val", device=device, batch_size=64)
    assert torch.equal(task.generator.get_state(), before)
    again = evaluate(model, "val", device=device, batch_size=64)
    assert repr(again) == repr(first)  # the Bellman error is NaN in both


def test_known_termination_rule_matches_the_environment() -> None:

    env = cartpole_with_distractors(0)
    observation, _ = env.reset(seed=0)
    checked = 0
    rng = np.random.default_rng(0)
    for _ in range(2000):
        observation, _, terminated, truncated, _ = env.step(int(rng.integers(2)))
        predicted = cartpole_done(torch.as_tensor(observation).unsqueeze(0))
        assert bool(predicted.item()) == terminated
        checked += terminated
        if terminated or truncated:
            observation, _ = env.reset()
    assert checked > 20


def test_cartpole_environment_state_round_trips() -> None:
    from twcore_task_rl.distractors import environment_state, set_environment_state

    env = cartpole_with_distractors(3)
    env.reset(seed=1)
    env.step(0)
    state = environment_state(env)
    expected = [env.step(1)[0] for _ in range(4)]
    other = cartpole_with_distractors(3)
    other.reset(seed=5)
    set_environment_state(other, state)
    assert all(np.array_equal(other.step(1)[0], e) for e in expected)


def test_mle_model_learning_lets_the_agent_improve_on_random(tmp_path) -> None:
    result = twcore.run(
        [
            "method=ew",
            "task=cartpole-distractors",
            "task.distractors=0",
            "steps=1500",
            "eval_every=0",
            "wandb.enabled=false",
            f"run_dir={tmp_path / 'run'}",
        ]
    )
    test = result.metrics["test"]
    assert test["return"] > 60  # a random policy averages about 22
    assert test["model_mse"] < 0.01


@pytest.mark.parametrize("name", ["gridworld-aux", "cartpole-distractors"])
def test_environment_tasks_stream_only_train_batches_and_need_the_model(name: str) -> None:
    harness = plugin_harness("ew", task=name)
    task, model = harness.components.task, harness.components.model
    with pytest.raises(ValueError, match=f"{name} streams only its train split, not 'val'"):
        task.stream("val", 8, seed=0, device=torch.device("cpu"), model=model)
    with pytest.raises(ValueError, match="pass model="):
        task.stream("train", 8, seed=0, device=torch.device("cpu"))


def _benchmark_script(name: str):
    """A script of this plugin's ``benchmarks/`` folder, imported as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"rl_benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cartpole_reader_leaves_out_a_validation_whose_task_loss_was_not_finite() -> None:
    """metrics.jsonl writes a NaN as the string "nan" (JSON has none): the reader reads it back
    and leaves that validation out of the rank correlation, which the other three decide."""
    cartpole = _benchmark_script("cartpole")
    loss, ret = cartpole.TASK_LOSS, cartpole.RETURN
    records = [
        {loss: 3.0, ret: 10.0},
        {loss: "nan", ret: 500.0},
        {loss: 2.0, ret: 20.0},
        {"step": 7},
        {loss: 1.0, ret: 30.0},
    ]
    assert cartpole.proxy_correlations([("taskmet", 32, records)]) == {
        ("taskmet", 32): [pytest.approx(-1.0)]
    }


def test_the_cartpole_reader_draws_the_metric_the_grids_taskmet_runs_logged(tmp_path) -> None:
    import json

    cartpole = _benchmark_script("cartpole")
    sweep = tmp_path / "runs" / cartpole.GRID / "sweep-0"
    for seed in (0, 1):
        twcore.run(
            [
                "method=taskmet",
                "method.metric=diagonal",
                "method.inner_steps_first=20",
                "method.inner_steps=5",
                "method.validate_every=1",
                "task=cartpole-distractors",
                "task.distractors=3",
                "steps=3",
                "eval_every=0",
                "checkpoint_every=0",
                f"seed={seed}",
                f"label={cartpole.GRID}/taskmet",
                "wandb.enabled=false",
                f"run_dir={sweep / f'seed-{seed}'}",
            ]
        )
    runs = cartpole.grid_runs(tmp_path / "runs")
    panels = cartpole.learned_metrics(runs)
    assert list(panels) == [("taskmet", 3)] and len(panels[("taskmet", 3)]) == 2
    # The curve is the logged diagonal: the 4 true dimensions, then the distractors' mean.
    logged = [
        json.loads(line)
        for line in (sweep / "seed-1" / "metrics.jsonl").read_text().splitlines()
        if "method/metric_diagonal/0" in line
    ]
    steps, values = panels[("taskmet", 3)][1]
    assert steps == [record["step"] for record in logged] and len(steps) == 3
    last = [logged[-1][f"method/metric_diagonal/{i}"] for i in range(7)]
    assert [series[-1] for series in values] == pytest.approx([*last[:4], sum(last[4:]) / 3])
    # The task loss's rank correlation with the return, per seed: Pearson's r of the ranks.
    from scipy.stats import rankdata

    lines = (sweep / "seed-1" / "metrics.jsonl").read_text().splitlines()
    pairs = [
        (record[cartpole.TASK_LOSS], record[cartpole.RETURN])
        for record in map(json.loads, lines)
        if cartpole.TASK_LOSS in record
    ]
    assert len(pairs) == 3
    ranks = rankdata(np.array(pairs), axis=0)
    expected = np.corrcoef(ranks[:, 0], ranks[:, 1])[0, 1]
    correlations = cartpole.proxy_correlations(runs)[("taskmet", 3)]
    assert len(correlations) == 2  # seed 0, then seed 1 (no seed's values were all tied)
    assert correlations[1] == pytest.approx(expected)
    out = tmp_path / "metric.png"
    import sys

    argv = sys.argv
    sys.argv = ["cartpole.py", str(tmp_path / "runs"), "--out", str(out)]
    try:
        assert cartpole.main() == 0
    finally:
        sys.argv = argv
    assert out.stat().st_size > 0
