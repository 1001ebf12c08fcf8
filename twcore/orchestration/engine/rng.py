"""Seeding and saving/restoring every random number generator a run uses."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (all devices); optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Set either way: an earlier run in the same process (a sweep) must not leak its choice.
    torch.use_deterministic_algorithms(deterministic)


def capture_rng_state() -> dict[str, Any]:
    """The state of every global RNG, in a form ``torch.load(weights_only=True)`` accepts."""
    numpy_state = np.random.get_state(legacy=False)
    python_version, python_internal, python_gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [python_version, list(python_internal), python_gauss],
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
        state["cuda_device"] = torch.cuda.current_device()
    return state


def restore_rng_state(state: dict[str, Any], *, own_device_only: bool = False) -> None:
    """Put every global RNG back to a state from :func:`capture_rng_state`.

    With `own_device_only` (a process of a data-parallel run, whose checkpoint process 0 wrote
    from its own GPU) this process's current CUDA device gets the state of the device the
    writer trained on, and no other device is touched."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {
                "key": numpy_state["key"].cpu().numpy().astype(np.uint32),
                "pos": numpy_state["pos"],
            },
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    # RNG states are CPU byte tensors, wherever the checkpoint was mapped to (a GPU resume).
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" not in state or not torch.cuda.is_available():
        return
    if own_device_only and "cuda_device" in state:
        written = state["cuda"][int(state["cuda_device"])]
        torch.cuda.set_rng_state(written.cpu(), device=torch.cuda.current_device())
    else:
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
