"""An Atari game from ale-py (ROMs bundled) as small stacked grayscale frames, saved exactly.

``AtariFrames`` wraps ``ale_py.env.AtariEnv`` (grayscale screens, ``frameskip`` frames per
action, sticky actions with probability ``repeat_action_probability`` as in the ``-v5``
games). Each 210 × 160 screen is area-averaged to ``frame_size`` × ``frame_size`` bytes, and the
observation is the last ``frame_stack`` of them, oldest first ([k, S, S], uint8). Episodes end
at game over and are truncated after ``max_steps`` actions. ``clip_rewards`` gives sign(r), as
DQN trains on; evaluation environments keep the game's score.

``get_state``/``set_state`` capture the emulator (with its RNG, so sticky actions replay
identically), the frame stack and the step count: a restored environment continues exactly.
The emulator is stored as ALE's own serialised bytes (a uint8 tensor), never as a pickle, so a
checkpoint that loads with ``torch.load(weights_only=True)`` cannot run code when it is restored.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

SCREEN = (210, 160)


def bundled_games() -> list[str]:
    """The games whose ROMs ale-py bundles (snake_case ids, e.g. ``breakout``)."""
    from ale_py.roms import get_all_rom_ids

    return sorted(get_all_rom_ids())


def downsample(screen: np.ndarray, size: int) -> np.ndarray:
    """A grayscale screen [210, 160] area-averaged to [size, size] bytes."""
    pixels = torch.from_numpy(screen).float()[None, None]
    small = F.adaptive_avg_pool2d(pixels, (size, size))[0, 0]
    return small.round_().clamp_(0, 255).to(torch.uint8).numpy()


class AtariFrames(gym.Env):
    """One ALE game with stacked, downsampled grayscale frames (module docstring)."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's attribute)

    def __init__(
        self,
        game: str,
        *,
        frame_size: int = 42,
        frame_stack: int = 4,
        frameskip: int = 4,
        repeat_action_probability: float = 0.25,
        max_steps: int = 1000,
        clip_rewards: bool = False,
    ) -> None:
        import ale_py
        from ale_py.env import AtariEnv

        # The emulator's banner and info lines would interleave with the run's progress.
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self.game = AtariEnv(
            game=game,
            obs_type="grayscale",
            frameskip=frameskip,
            repeat_action_probability=repeat_action_probability,
        )
        self.frame_size = frame_size
        self.max_steps = max_steps
        self.clip_rewards = clip_rewards
        self.frames = np.zeros((frame_stack, frame_size, frame_size), dtype=np.uint8)
        self.steps = 0
        self.action_space = self.game.action_space
        self.observation_space = gym.spaces.Box(0, 255, self.frames.shape, dtype=np.uint8)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        screen, info = self.game.reset(seed=seed)
        self.frames[:] = downsample(screen, self.frame_size)
        self.steps = 0
        return self.frames.copy(), dict(info)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        screen, reward, terminated, _, info = self.game.step(int(action))
        self.frames[:-1] = self.frames[1:]
        self.frames[-1] = downsample(screen, self.frame_size)
        self.steps += 1
        truncated = not terminated and self.steps >= self.max_steps
        reward = float(np.sign(reward)) if self.clip_rewards else float(reward)
        return self.frames.copy(), reward, bool(terminated), truncated, dict(info)

    def get_state(self) -> dict[str, Any]:
        """The emulator (RNG included, as ALE's serialised bytes [n] uint8), frames and steps."""
        emulator = self.game.clone_state(include_rng=True).serialize()
        return {
            "emulator": torch.frombuffer(bytearray(emulator), dtype=torch.uint8),
            "frames": torch.from_numpy(self.frames.copy()),
            "steps": self.steps,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` result; ValueError if its emulator bytes are not ALE's."""
        import ale_py

        serialised = state["emulator"].numpy().tobytes()
        # ALE rejects bytes it cannot parse either when decoding or when loading them into the
        # emulator, and its bindings report that as SystemError or ValueError.
        try:
            self.game.restore_state(ale_py.ALEState(serialised))
        except (SystemError, ValueError, RuntimeError) as error:
            raise ValueError(
                f"the checkpoint's emulator state cannot be restored: its {len(serialised)} bytes"
                " are not an ALE state saved by this plugin (checkpoints from before emulator"
                " states were stored as ALE bytes, or a damaged or crafted file)"
            ) from error
        self.frames[:] = state["frames"].numpy()
        self.steps = int(state["steps"])

    def close(self) -> None:
        self.game.close()
