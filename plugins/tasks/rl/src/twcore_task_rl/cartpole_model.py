"""``cartpole-distractors``: model-based RL on CartPole with distracting observation dimensions.

The *model* being trained is a dynamics model: input (observation, one-hot action), head
``next_obs`` predicting the next observation (4 true dimensions + d distractors). A soft-Q
agent (:mod:`~twcore_task_rl.soft_q`), owned by the task, acts in the real environment and
learns only from transitions the current model generates. So the model's errors reach the
agent, and a model that spends its capacity on the unpredictable distractors serves it badly.

Objective ``next_obs``: the squared error of the prediction (plain MLE training is ``ew``).
``decision`` capability, for TaskMet and DFL (the OMD-style baseline, trained directly on the
task loss): the task loss of predictions ŝ' on a batch of real transitions is the agent's
Bellman error on those real transitions *after one Q-learning step on the model's transitions*
(ŝ' in place of s'), Q'(θ) = Q − η ∇_Q E[(Q(s, a) − y(ŝ'))²]:

    L_task = E_real (Q'(s, a) − r − γ (1 − terminated) V(s'))²

a one-step unrolled version of OMD's implicit gradient through the agent's learning. With
``lookahead_terms`` K > 1 the step is ω' = ω − η Σ_{j<K} (I − η (H + λI))^j g, the first K
terms of the Neumann series of the damped Newton step ω − (H + λI)^{-1} g (g and H the gradient
and Hessian of the agent's regression loss on the model transitions with respect to its
parameters ω, λ = ``lookahead_damping``). As K grows, the task loss's gradient becomes the
implicit gradient through the fixed point of that regression (at a fixed point, g = 0 and
dω*/dŝ' = −H⁻¹ ∂g/∂ŝ'), with the target network held fixed (``soft-bellman`` below
differentiates the targets' dependence on ω too).
K = 1 is the one-step lookahead. For K > 1 the series' step is η capped at 1/(1.1 λ̂_max),
λ̂_max a power iteration's estimate, so that large curvature cannot make it diverge (the cap is
not differentiated: at finite K the gradient treats it as a constant); ``lookahead_curvature=
gauss-newton`` puts the Gauss–Newton matrix (2/B) JᵀJ, J = ∂Q(s, a)/∂ω, in place of H, which
is positive semidefinite and has the regression's gradient g = (2/B) Jᵀ(Q − y) in its range, so
that the series converges for any damping (at λ = 0 to G⁺g, slowly along small eigenvalues).
``lookahead_curvature=soft-bellman`` takes the fixed point of the soft-Bellman operator itself,
OMD's: the model transitions' targets bootstrap from the Q network being stepped, y = r + γ (1 −
done) V_ω(ŝ'), g is the regression's semi-gradient (the targets held), and M = dg/dω is the
Jacobian of the fixed-point condition g(ω, ω̄ = ω) = 0, which also differentiates the targets'
dependence on ω (not symmetric, so Mv is taken as a Jacobian–vector product). As K grows the
gradient becomes the implicit gradient through that fixed point: at it, dω*/dŝ' = −M⁻¹ ∂g/∂ŝ'.
A K > 1 series whose last term is larger than its first is taken to diverge (a non-symmetric M
may grow for a while and then shrink, but not within the K terms taken), and a step built on it
would be noise: its decisions are NaN, so that TaskMet skips the outer step and counts it
(``method/skipped_outer_steps``), and a method trained on the task loss itself stops with the
engine's divergence error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from twcore.autodiff.data_parallel import sum_of_shares
from twcore.contract.batch import Batch
from twcore.contract.losses import squared_error_per_example
from twcore.contract.metrics import Direction
from twcore.contract.options import option
from twcore.contract.spec import Capability, HeadSpec, ObjectiveKind, ObjectiveSpec, Role, TaskSpec
from twcore.contract.task import Task
from twcore_task_rl.bellman import soft_q_targets
from twcore_task_rl.distractors import (
    cartpole_with_distractors,
    environment_state,
    set_environment_state,
)
from twcore_task_rl.replay import ReplayBuffer
from twcore_task_rl.requests import check_stream_request
from twcore_task_rl.soft_q import SoftQAgent

ACTIONS = 2
TRUE_DIMS = 4
EPISODE_SUMS = ("return", "transitions", "model_squared_error", "bellman_error")
"""What each evaluation episode adds up (:meth:`CartpoleDistractorsTask._evaluation_episode`)."""
EVAL_SEEDS = {"val": 10_000, "test": 20_000}
CURVATURES = ("hessian", "gauss-newton", "soft-bellman")
POWER_ITERATIONS = 20
"""Power iterations that estimate the series' largest curvature (its step's cap)."""


@dataclass
class CartpoleDistractorsConfig:
    distractors: int = option(32, ge=0, help="d, the i.i.d. N(0, 1) dimensions appended")
    gamma: float = option(0.99, gt=0, lt=1, help="discount factor")
    temperature: float = option(0.05, help="soft-Q temperature α (Boltzmann policy)")
    agent_hidden: int = option(64, ge=1, help="hidden width of the Q network")
    agent_lr: float = option(1e-3, help="Adam learning rate of the Q network")
    polyak: float = option(0.01, help="target network update rate")
    agent_updates: int = option(1, ge=1, help="agent updates on model transitions per batch")
    env_steps: int = option(1, ge=1, help="real environment steps per batch")
    warmup: int = option(500, ge=1, help="random-action transitions before the first batch")
    capacity: int = option(50_000, ge=1, help="replay buffer size")
    eval_episodes: int = option(10, ge=10, help="greedy episodes per evaluation (at least 10)")
    lookahead_lr: float = option(0.01, help="η of the task loss's one-step Q lookahead")
    lookahead_terms: int = option(
        1,
        ge=1,
        help="K, terms of the Neumann series of the task loss's Q step (1: one gradient step; "
        "more: towards the implicit gradient through the agent's fixed point; a series whose "
        "last term outgrows its first gives NaN decisions: TaskMet skips that outer step)",
    )
    lookahead_damping: float = option(
        0.0, ge=0, help="λ, damping of the series' matrix in the task loss's Q step (K > 1 only)"
    )
    lookahead_curvature: str = option(
        "hessian",
        choices=CURVATURES,
        help="the curvature of the K > 1 series: the regression's Hessian (exact, may be "
        "indefinite), its Gauss-Newton matrix (positive semidefinite: the series converges), or "
        "soft-bellman: the Jacobian of the soft-Bellman fixed point (OMD's implicit gradient as "
        "K grows), whose targets bootstrap from the stepped Q network at every K, 1 included",
    )


Vectors = list[Tensor]


class CurvatureProduct(Protocol):
    def __call__(self, v: Vectors, *, graph: bool = True) -> Vectors: ...


@dataclass
class QRegression:
    """The agent's regression E[(Q(s, a) − y)²] on the model transitions (s, a, ŝ'), as the
    task loss's Q step needs it (:func:`q_regression`)."""

    params: dict[str, Tensor]
    """ω, the Q network's parameters (the step's starting point)."""
    grads: Vectors
    """g, the regression's gradient in ω, made with a graph (to ω and to ŝ')."""
    chosen: Tensor
    """Q(s, a) [B]."""


def q_regression(agent: SoftQAgent, predictions: Tensor, batch: Batch, kind: str) -> QRegression:
    """The regression whose targets are y = 1 + γ (1 − done(ŝ'))·α log Σ exp(Q'(ŝ')/α), Q' the
    agent's target network, or for ``soft-bellman`` the Q network itself. There ω is read twice:
    regressed, through a copy in whose entries g is taken (the semi-gradient, the targets held,
    as Q-learning takes it), and bootstrapped, so that the derivative of g in ω itself is the
    Jacobian of the soft-Bellman fixed-point condition g(ω, ω̄ = ω) = 0."""
    params = dict(agent.q.named_parameters())
    if kind == "soft-bellman":
        regressed = {n: p.clone() for n, p in params.items()}
        next_q = functional_call(agent.q, params, (predictions,))
    else:
        regressed, next_q = params, agent.target(predictions)
    targets = agent.targets_from(predictions, next_q)
    values = functional_call(agent.q, regressed, (batch.context["observation"],))
    chosen = values.gather(1, batch.context["action"].unsqueeze(1)).squeeze(1)
    loss = (chosen - targets).pow(2).mean()
    grads = list(torch.autograd.grad(loss, list(regressed.values()), create_graph=True))
    return QRegression(params, grads, chosen)


def curvature_product(kind: str, regression: QRegression, *, damping: float) -> CurvatureProduct:
    """v ↦ (M + λI) v for the `regression` in the Q network's parameters ω: M the derivative of
    its gradient g in ω (``hessian``: the regression's Hessian; ``soft-bellman``: the Jacobian of
    the fixed-point condition, not symmetric), or its Gauss–Newton matrix (2/B) JᵀJ with J =
    ∂Q(s, a)/∂ω (``gauss-newton``); λ = `damping`. With ``graph`` (the default) the product is
    differentiable in v, which carries the task loss's graph to ŝ'; without, it builds no graph
    (the power iteration's products)."""
    grads, params = regression.grads, list(regression.params.values())
    if kind == "hessian":  # symmetric: the vector–Jacobian product is the product

        def curvature(v: Vectors, graph: bool) -> Vectors:
            return list(
                torch.autograd.grad(
                    grads, params, grad_outputs=v, create_graph=graph, retain_graph=True
                )
            )

    elif kind == "soft-bellman":  # not symmetric: Mv is the derivative of Mᵀw in w along v
        probes = [torch.zeros_like(g, requires_grad=True) for g in grads]
        transposed = torch.autograd.grad(grads, params, grad_outputs=probes, create_graph=True)

        def curvature(v: Vectors, graph: bool) -> Vectors:
            return list(
                torch.autograd.grad(
                    transposed, probes, grad_outputs=v, create_graph=graph, retain_graph=True
                )
            )

    else:
        chosen = regression.chosen
        probe = torch.zeros_like(chosen, requires_grad=True)
        # Jᵀw is linear in w, so its derivative in w along v is Jv.
        pulled = torch.autograd.grad(chosen, params, grad_outputs=probe, create_graph=True)
        scale = 2.0 / len(chosen)

        def curvature(v: Vectors, graph: bool) -> Vectors:
            (pushed,) = torch.autograd.grad(
                pulled, probe, grad_outputs=v, create_graph=graph, retain_graph=True
            )
            return list(
                torch.autograd.grad(
                    chosen,
                    params,
                    grad_outputs=scale * pushed,
                    create_graph=graph,
                    retain_graph=True,
                )
            )

    def damped(v: Vectors, *, graph: bool = True) -> Vectors:
        return [m + damping * t for t, m in zip(v, curvature(v, graph), strict=True)]

    return damped


CAP_MARGIN = 1.1
"""The series' step is at most 1/(CAP_MARGIN · λ̂_max): for a symmetric matrix, power
iteration's estimate λ̂_max approaches λ_max from below. (For the soft-Bellman Jacobian, not
symmetric, the cap bounds the step but guarantees no convergence: a complex eigenvalue μ needs
η < 2 Re μ / |μ|², and one with a negative real part none; :meth:`BellmanDecision.decide`
reports such a series as diverged.)"""


def largest_curvature(times: CurvatureProduct, start: Vectors) -> float:
    """An estimate of the largest eigenvalue magnitude of the matrix `times` applies, by
    :data:`POWER_ITERATIONS` power iterations from `start` mixed, at equal norm, with a fixed
    random direction (so that a start nearly orthogonal to the top eigenvector still finds it);
    0 for a zero matrix, inf when the start or the products are not finite. For a symmetric
    matrix the estimate never exceeds the true value, hence :data:`CAP_MARGIN`; for the
    soft-Bellman Jacobian, not symmetric, it may fall on either side of its spectral radius."""
    generator = torch.Generator().manual_seed(0)
    random = [torch.randn(v.shape, generator=generator, dtype=torch.float64) for v in start]
    random = [r.to(device=v.device, dtype=v.dtype) for r, v in zip(random, start, strict=True)]
    given, spread = _norm(start), _norm(random)
    if not math.isfinite(given):
        return math.inf
    vector = [
        r / spread + (v.detach() / given if given > 0 else 0)
        for r, v in zip(random, start, strict=True)
    ]
    magnitude = 0.0
    for _ in range(POWER_ITERATIONS):
        norm = _norm(vector)
        if norm == 0.0:
            return magnitude
        product = times([v / norm for v in vector], graph=False)
        vector = [m.detach() for m in product]
        magnitude = _norm(vector)
        if not math.isfinite(magnitude):
            return math.inf
    return magnitude


def _norm(vectors: Vectors) -> float:
    """The Euclidean norm of a list of tensors, scaled first so that squaring cannot overflow
    (float32); inf if any entry is not finite."""
    largest = max(float(v.detach().abs().max()) for v in vectors if v.numel())
    if not math.isfinite(largest):
        return math.inf
    if largest == 0.0:
        return 0.0
    return largest * math.sqrt(sum(float(((v.detach() / largest) ** 2).sum()) for v in vectors))


class BellmanDecision:
    """The ``decision`` capability of :class:`CartpoleDistractorsTask` (module docstring)."""

    head = "next_obs"

    def __init__(self, task: CartpoleDistractorsTask) -> None:
        self.task = task

    def decide(self, predictions: Tensor, batch: Batch) -> Tensor:
        """Q'(s, a) [B] after the Q step on the model transitions (s, a, ŝ'): one gradient step,
        or K terms of the damped Newton step's Neumann series (module docstring); NaN where
        the series is taken to diverge (its last term is larger than its first, or its
        curvature is not finite), so that the step built on it is skipped, not taken."""
        agent, config = self.task.agent, self.task.config
        regression = q_regression(agent, predictions, batch, config.lookahead_curvature)
        grads = regression.grads
        lr = config.lookahead_lr
        total, diverged = list(grads), False
        if config.lookahead_terms > 1:
            times = curvature_product(
                config.lookahead_curvature, regression, damping=config.lookahead_damping
            )
            largest = largest_curvature(times, grads)
            diverged = not math.isfinite(largest)  # non-finite products: no step to take
            if largest > 0:  # the series' step, capped where the curvature would diverge it
                lr = min(lr, 1.0 / (CAP_MARGIN * largest))
            term = list(grads)
            for _ in range(config.lookahead_terms - 1):  # term ← (I − η(M + λI)) term
                term = [t - lr * m for t, m in zip(term, times(term), strict=True)]
                total = [a + t for a, t in zip(total, term, strict=True)]
            diverged = diverged or _norm(term) > _norm(grads)
        ahead = {n: p - lr * s for (n, p), s in zip(regression.params.items(), total, strict=True)}
        after = functional_call(agent.q, ahead, (batch.context["observation"],))
        decisions = after.gather(1, batch.context["action"].unsqueeze(1)).squeeze(1)
        return decisions * math.nan if diverged else decisions

    def objective(self, decisions: Tensor, batch: Batch) -> Tensor:
        """−(Q'(s, a) − y_real)² per real transition (higher is better)."""
        agent, context = self.task.agent, batch.context
        with torch.no_grad():
            real = soft_q_targets(
                context["reward"],
                context["terminated"],
                agent.target(context["next_observation"]),
                agent.gamma,
                agent.temperature,
            )
        return -(decisions - real).pow(2)


class CartpoleDistractorsTask(Task):
    """Dynamics-model learning for a Dyna soft-Q agent on CartPole + distractors."""

    Config = CartpoleDistractorsConfig

    def __init__(self, config: CartpoleDistractorsConfig) -> None:
        super().__init__(config)
        self.observation_size = TRUE_DIMS + config.distractors
        self.env = cartpole_with_distractors(config.distractors)
        self.replay = ReplayBuffer(config.capacity, self.observation_size)
        self.agent: SoftQAgent | None = None
        self.model: torch.nn.Module | None = None
        self.generator = torch.Generator()
        self.observation: Tensor | None = None
        self.env_steps = 0
        self.decision = BellmanDecision(self)

    @cached_property
    def spec(self) -> TaskSpec:  # type: ignore[override]
        return TaskSpec(
            input_shape=(self.observation_size + ACTIONS,),
            heads=(HeadSpec("next_obs", self.observation_size),),
            objectives=(
                ObjectiveSpec("next_obs", "next_obs", ObjectiveKind.REGRESSION, Role.MAIN),
            ),
            capabilities=frozenset({Capability.ENVIRONMENT, Capability.DECISION}),
            primary_metric="return",
            primary_mode="max",
            summary_metrics=("return", "model_mse", "bellman_error"),
        )

    @property
    def metric_directions(self) -> dict[str, Direction]:
        """The greedy agent's return and the decision objective, −(Bellman error) (higher is
        better); the dynamics model's squared error and the agent's Bellman error (lower)."""
        return {"return": "max", "model_mse": "min", "bellman_error": "min", "objective": "max"}

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """Greedy episodes with validation seeds (TaskMet selects on them) and test seeds."""
        return ("val", "test")

    # -- the agent and its data -------------------------------------------------------------

    def _start(self, model: torch.nn.Module, seed: int, device: torch.device) -> None:
        """Bind the dynamics model, seed the agent and the environment (once per task)."""
        if self.agent is not None:
            return
        config = self.config
        self.model = model
        self.device = device
        self.agent = SoftQAgent(
            self.observation_size,
            ACTIONS,
            hidden=config.agent_hidden,
            lr=config.agent_lr,
            temperature=config.temperature,
            gamma=config.gamma,
            polyak=config.polyak,
            seed=seed,
        ).to(device)
        self.generator.manual_seed(seed)
        observation, _ = self.env.reset(seed=seed)
        self.observation = torch.as_tensor(observation)

    def tick(self) -> None:
        """Real environment steps, then agent updates on model transitions."""
        config = self.config
        while len(self.replay) < config.warmup:
            self._step(explore=True)
        for _ in range(config.env_steps):
            self._step(explore=False)
        for _ in range(config.agent_updates):
            sample = self.replay.sample(64, self.generator)
            inputs = model_inputs(sample["observation"], sample["action"]).to(self.device)
            with torch.no_grad():
                predicted = self.model(inputs)["next_obs"]
            targets = self.agent.model_targets(predicted)
            self.agent.update(
                sample["observation"].to(self.device), sample["action"].to(self.device), targets
            )

    def _step(self, *, explore: bool) -> None:
        if explore:
            action = int(torch.randint(ACTIONS, (), generator=self.generator))
        else:
            action = self.agent.act(self.observation.to(self.device), self.generator)
        observation, reward, terminated, truncated, _ = self.env.step(action)
        following = torch.as_tensor(observation)
        self.replay.add(self.observation, action, reward, following, terminated)
        self.env_steps += 1
        if terminated or truncated:
            observation, _ = self.env.reset()
            following = torch.as_tensor(observation)
        self.observation = following

    def stream(
        self,
        split: str,
        batch_size: int,
        *,
        seed: int,
        device: torch.device,
        model: torch.nn.Module | None = None,
    ) -> ReplayStream:
        check_stream_request("cartpole-distractors", split, model)
        self._start(model, seed, device)
        return ReplayStream(self, batch_size, seed=seed, device=device)

    # -- losses and evaluation --------------------------------------------------------------

    def objective_losses(self, outputs: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        return {
            "next_obs": squared_error_per_example(outputs["next_obs"], batch.targets["next_obs"])
        }

    @torch.no_grad()
    def evaluate(
        self, model: torch.nn.Module, split: str, *, device: torch.device, batch_size: int
    ) -> dict[str, float]:
        """Greedy episodes of the agent: mean return; the model's squared error on the true
        dimensions and the agent's real Bellman error, over the episodes' transitions. In a
        data-parallel run each process plays its share of the episodes, and the sums are
        added over the processes."""
        if split not in EVAL_SEEDS:
            raise ValueError(f"cartpole-distractors evaluates 'val' or 'test', not '{split}'")
        if self.agent is None:
            self._start(model, 0, device)
        was_training = model.training
        model.eval()
        try:
            seed = EVAL_SEEDS[split]
            totals = sum_of_shares(
                self.config.eval_episodes,
                lambda episode: self._evaluation_episode(model, seed + episode, device),
                EPISODE_SUMS,
                device,
            )
        finally:
            model.train(was_training)
        bellman = totals["bellman_error"] / totals["transitions"]
        return {
            "return": totals["return"] / self.config.eval_episodes,
            "model_mse": totals["model_squared_error"] / (totals["transitions"] * TRUE_DIMS),
            "bellman_error": bellman,
            "objective": -bellman,
        }

    def _evaluation_episode(
        self, model: torch.nn.Module, seed: int, device: torch.device
    ) -> dict[str, float]:
        """One greedy episode from `seed`: its return, its transitions' count, and the sums of
        the model's squared error on the true dimensions and of the agent's real Bellman error
        over them. A diverged agent's random actions draw from the episode's own generator,
        never the training stream's."""
        assert self.agent is not None
        env = cartpole_with_distractors(self.config.distractors)
        generator = torch.Generator().manual_seed(seed)
        observation, _ = env.reset(seed=seed)
        total, done, rows = 0.0, False, []
        while not done:
            state = torch.as_tensor(observation)
            action = self.agent.act(state.to(device), generator, greedy=True)
            observation, reward, terminated, truncated, _ = env.step(action)
            rows.append((state, action, reward, torch.as_tensor(observation), terminated))
            total += reward
            done = terminated or truncated
        states = torch.stack([r[0] for r in rows]).to(device)
        actions = torch.tensor([r[1] for r in rows], device=device)
        rewards = torch.tensor([r[2] for r in rows], dtype=torch.float32, device=device)
        following = torch.stack([r[3] for r in rows]).to(device)
        terminated = torch.tensor([float(r[4]) for r in rows], device=device)
        predicted = model(model_inputs(states, actions))["next_obs"]
        errors = (predicted[:, :TRUE_DIMS] - following[:, :TRUE_DIMS]).pow(2)
        bellman = self.agent.real_bellman_error(states, actions, rewards, following, terminated)
        return {
            "return": total,
            "transitions": float(len(rows)),
            "model_squared_error": float(errors.double().sum()),
            "bellman_error": float(bellman.double().sum()),
        }

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        if self.agent is None:
            return {}
        return {
            "env": environment_state(self.env),
            "observation": self.observation.clone(),
            "replay": self.replay.state_dict(),
            "agent": self.agent.agent_state(),
            "generator": self.generator.get_state(),
            "env_steps": self.env_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        set_environment_state(self.env, state["env"])
        self.observation = state["observation"].clone()
        self.replay.load_state_dict(state["replay"])
        self.agent.load_agent_state(state["agent"])
        self.generator.set_state(state["generator"])
        self.env_steps = int(state["env_steps"])


def model_inputs(observations: Tensor, actions: Tensor) -> Tensor:
    """The dynamics model's input: observation ⊕ one-hot action, [B, D + 2]."""
    return torch.cat([observations, F.one_hot(actions.long(), ACTIONS).float()], dim=1)


class ReplayStream:
    """Batches of real transitions for the dynamics model; each batch first advances the
    task's agent (:meth:`CartpoleDistractorsTask.tick`)."""

    def __init__(
        self, task: CartpoleDistractorsTask, batch_size: int, *, seed: int, device: torch.device
    ) -> None:
        self.task = task
        self.batch_size = batch_size
        self.device = device
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.completed_epochs = 0

    def __iter__(self) -> ReplayStream:
        return self

    def __next__(self) -> Batch:
        self.task.tick()
        sample = self.task.replay.sample(self.batch_size, self.generator)
        sample = {k: v.to(self.device) for k, v in sample.items()}
        return Batch(
            inputs=model_inputs(sample["observation"], sample["action"]),
            targets={"next_obs": sample["next_observation"]},
            context=sample,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
