"""twcore: learned loss weighting and learned losses for PyTorch.

``twcore.run([...overrides])`` trains one run and ``twcore.resume(run_dir)`` continues one (see
:mod:`twcore.orchestration.api`). Plugin authors import :mod:`twcore.contract`, which loads none
of the orchestration.
"""

from typing import Any

from twcore.version import __version__

__all__ = ["__version__", "resume", "run"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing the contract does not import the engine.
    if name in ("run", "resume"):
        from twcore.orchestration import api

        return getattr(api, name)
    raise AttributeError(f"module 'twcore' has no attribute '{name}'")
