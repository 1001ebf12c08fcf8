"""twcore: learned loss weighting and learned losses for PyTorch.

``twcore.run([...overrides])`` trains one run and ``twcore.resume(run_dir)`` continues one; see
:mod:`twcore.api`. Plugins implement the hooks of :mod:`twcore.hookspecs`.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "resume", "run"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import twcore.hookspecs` in a plugin does not import the whole engine.
    if name in ("run", "resume"):
        from twcore import api

        return getattr(api, name)
    raise AttributeError(f"module 'twcore' has no attribute '{name}'")
