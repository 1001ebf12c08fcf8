"""The Atari plugin: frames, seeding, exact state, clipped rewards, the atari-aux task."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from twcore_task_atari import AtariFrames, downsample
from twcore_task_atari.atari_aux import AtariAuxConfig
from twcore_task_rl.auxiliary_q import AuxiliaryQConfig
from twcore_task_rl.conformance import EnvironmentTaskConformance

import twcore
from twcore.contract.errors import ConfigError
from twcore.contract.options import constraint_of
from twcore.orchestration.config.compose import compose
from twcore.testing import MethodConformance, plugin_harness

SMALL = {
    "frame_size": 21,
    "frame_stack": 2,
    "warmup": 64,
    "capacity": 500,
    "exploration_steps": 200,
    "target_update": 10,
    "max_steps": 60,
    "eval_episodes": 2,
}
FIRE = 1  # Breakout's minimal action set: NOOP, FIRE, RIGHT, LEFT


def _harness():
    return plugin_harness(
        "ew", task="atari-aux", options={f"task.{k}": v for k, v in SMALL.items()}
    )


def _play(env: AtariFrames, actions: list[int]) -> list[tuple]:
    return [
        (obs.copy(), reward, terminated, truncated)
        for obs, reward, terminated, truncated, _ in (env.step(a) for a in actions)
    ]


def _actions(count: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(0, 4, count).tolist()


def _same(first: list[tuple], second: list[tuple]) -> bool:
    return all(
        np.array_equal(a[0], b[0]) and a[1:] == b[1:] for a, b in zip(first, second, strict=True)
    )


class TestAtariAuxConformance(EnvironmentTaskConformance):
    task = "atari-aux"
    task_options = SMALL


class TestGradCosOnAtariAux(MethodConformance):
    """A main/auxiliary method on Atari: exact resume includes the emulator and the replay."""

    method = "gradcos"
    task = "atari-aux"
    task_options = SMALL


# -- the environment ---------------------------------------------------------------------------


def test_downsample_is_the_block_mean_of_the_screen() -> None:
    screen = np.random.default_rng(0).integers(0, 256, (210, 160), dtype=np.uint8)
    # 210 × 160 → 10 × 10 is exact 21 × 16 blocks: compare with a reshape mean.
    blocks = screen.reshape(10, 21, 10, 16).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_array_equal(downsample(screen, 10), np.round(blocks).astype(np.uint8))


def test_observations_stack_the_last_frames_oldest_first() -> None:
    env = AtariFrames("breakout", frame_size=21, frame_stack=3)
    first, _ = env.reset(seed=0)
    assert first.shape == (3, 21, 21) and first.dtype == np.uint8
    assert env.observation_space.contains(first)
    assert all(np.array_equal(first[0], frame) for frame in first)  # the start frame, repeated
    previous = first
    for action in [FIRE, 2, 2, 3, 0]:
        observation, *_ = env.step(action)
        np.testing.assert_array_equal(observation[:-1], previous[1:])
        previous = observation


def test_the_same_seed_gives_the_same_episode() -> None:
    actions = _actions(200)
    runs = []
    for _ in range(2):
        env = AtariFrames("breakout", frame_size=21, frame_stack=2)
        env.reset(seed=7)
        runs.append(_play(env, actions))
    assert _same(*runs)


def test_a_restored_state_continues_exactly_even_after_a_checkpoint(tmp_path) -> None:
    env = AtariFrames("breakout", frame_size=21, frame_stack=2)
    env.reset(seed=3)
    _play(env, _actions(50, seed=1))
    path = tmp_path / "state.pt"
    torch.save(env.get_state(), path)
    expected = _play(env, _actions(150, seed=2))  # sticky actions draw from the emulator's RNG
    fresh = AtariFrames("breakout", frame_size=21, frame_stack=2)
    fresh.reset(seed=99)
    fresh.set_state(torch.load(path, weights_only=True))
    assert _same(_play(fresh, _actions(150, seed=2)), expected)


def _code_running_pickle(marker) -> bytes:
    """A pickle (protocol 0, written out so no pickle module is imported) that, when unpickled,
    calls ``open(marker, "w")``: GLOBAL builtins.open, MARK, two strings, TUPLE, REDUCE, STOP."""
    return f"cbuiltins\nopen\n(V{marker}\nVw\ntR.".encode()


def _state_with_emulator(env: AtariFrames, emulator: bytes) -> dict:
    state = env.get_state()
    state["emulator"] = torch.frombuffer(bytearray(emulator), dtype=torch.uint8)
    return state


def test_an_emulator_state_holding_a_pickle_is_refused_without_running_it(tmp_path) -> None:
    env = AtariFrames("breakout", frame_size=21, frame_stack=2)
    env.reset(seed=0)
    marker = tmp_path / "code-ran"
    path = tmp_path / "state.pt"
    # The crafted state survives the weights_only load a resume does: only set_state could run it.
    torch.save(_state_with_emulator(env, _code_running_pickle(marker)), path)
    crafted = torch.load(path, weights_only=True)
    with pytest.raises(ValueError, match="emulator state cannot be restored"):
        env.set_state(crafted)
    assert not marker.exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"not an emulator state",
        lambda data: data[: len(data) // 2],
        lambda data: bytes(len(data)),  # decodes, but the emulator refuses to load it
    ],
    ids=["garbage", "truncated", "zeros"],
)
def test_emulator_bytes_that_are_not_an_ale_state_are_a_clear_value_error(damage) -> None:
    env = AtariFrames("breakout", frame_size=21, frame_stack=2)
    env.reset(seed=0)
    saved = env.get_state()["emulator"].numpy().tobytes()
    with pytest.raises(ValueError, match="checkpoint's emulator state cannot be restored"):
        env.set_state(_state_with_emulator(env, damage(saved)))


def test_training_rewards_are_the_sign_of_the_game_score() -> None:
    actions = [FIRE if i % 10 == 0 else a for i, a in enumerate(_actions(600))]
    rewards = {}
    for clip in (False, True):
        env = AtariFrames("breakout", frame_size=21, frame_stack=2, clip_rewards=clip)
        env.reset(seed=0)
        steps = []
        for action in actions:
            _, reward, terminated, truncated, _ = env.step(action)
            steps.append(reward)
            if terminated or truncated:
                env.reset()
        rewards[clip] = np.array(steps)
    assert (rewards[False] > 0).sum() > 0, "random play scored no point: nothing was checked"
    np.testing.assert_array_equal(rewards[True], np.sign(rewards[False]))


def test_episodes_are_truncated_after_max_steps() -> None:
    env = AtariFrames("breakout", frame_size=21, frame_stack=2, max_steps=5)
    env.reset(seed=0)
    flags = [env.step(0)[3] for _ in range(5)]
    assert flags == [False] * 4 + [True]


# -- the task ----------------------------------------------------------------------------------


def test_batches_carry_clipped_rewards_and_the_random_code_of_their_frames() -> None:
    harness = _harness()
    task, batch = harness.components.task, next(harness.stream)
    assert batch.inputs.dtype == torch.float32
    assert batch.inputs.shape[1:] == (2, 21, 21)
    assert batch.inputs.min() >= 0 and batch.inputs.max() <= 1
    assert set(batch.targets["reward"].unique().tolist()) <= {-1.0, 0.0, 1.0}
    codes = (batch.inputs.flatten(1) - 0.5) @ task.projection
    torch.testing.assert_close(batch.targets["random"], torch.sign(codes))
    # A fixed function of the state: the same frames give the same targets.
    torch.testing.assert_close(task.random_targets(batch.inputs), batch.targets["random"])


def test_a_short_gradcos_run_with_the_cnn_finishes_with_finite_metrics(tmp_path) -> None:
    result = twcore.run(
        [
            "method=gradcos",
            "task=atari-aux",
            "model=cnn",
            "model.channels=[4,8]",
            *(f"task.{key}={value}" for key, value in SMALL.items()),
            "steps=40",
            "eval_every=20",
            "wandb.enabled=false",
            f"run_dir={tmp_path / 'run'}",
        ]
    )
    test = result.metrics["test"]
    assert np.isfinite(test["return"]) and test["length"] >= 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("task.game=tetris2", r"^task\.game=tetris2 must be one of adventure, .*breakout"),
        ("task.frame_size=0", r"^task\.frame_size=0 must be >= 1$"),
        ("task.sticky_actions=2", r"^task\.sticky_actions=2\.0 must be >= 0 and <= 1$"),
        (
            "task.auxiliaries=[noise]",
            r"^task\.auxiliaries=\[noise\] holds 'noise': each element must be one of reward, ",
        ),
    ],
)
def test_bad_options_are_config_errors(tmp_path, override, message) -> None:
    with pytest.raises(ConfigError, match=message):
        twcore.run(["task=atari-aux", override, f"run_dir={tmp_path / 'r'}"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("task.gamma=1", r"^task\.gamma=1\.0 must be > 0 and < 1$"),
        ("task.warmup=0", r"^task\.warmup=0 must be >= 1$"),
        ("task.capacity=0", r"^task\.capacity=0 must be >= 1$"),
        ("task.target_update=0", r"^task\.target_update=0 must be >= 1$"),
        ("task.random_size=0", r"^task\.random_size=0 must be >= 1$"),
        ("task.eval_episodes=0", r"^task\.eval_episodes=0 must be >= 1$"),
        ("task.eval_epsilon=nan", r"^task\.eval_epsilon=nan must be a finite number >= 0"),
        (
            "task.auxiliaries=[reward,reward]",
            r"^task 'atari-aux' options are invalid: auxiliaries=\['reward', 'reward'\] repeats",
        ),
    ],
)
def test_options_redeclared_from_auxiliary_q_keep_its_constraints(override, message) -> None:
    with pytest.raises(ConfigError, match=message):
        compose(["task=atari-aux", override])


def test_only_eval_episodes_relaxes_a_constraint_of_auxiliary_q() -> None:
    base = {field.name: field for field in dataclasses.fields(AuxiliaryQConfig)}
    relaxed = {
        field.name
        for field in dataclasses.fields(AtariAuxConfig)
        if field.name in base and constraint_of(field) != constraint_of(base[field.name])
    }
    assert relaxed == {"eval_episodes"}
    assert compose(["task=atari-aux", "task.eval_episodes=1"]).sections["task"].eval_episodes == 1


def test_the_stream_serves_only_train_batches_and_needs_the_model() -> None:
    harness = _harness()
    task, model = harness.components.task, harness.components.model
    with pytest.raises(ValueError, match="atari-aux streams only its train split, not 'val'"):
        task.stream("val", 8, seed=0, device=torch.device("cpu"), model=model)
    with pytest.raises(ValueError, match="pass model="):
        task.stream("train", 8, seed=0, device=torch.device("cpu"))
