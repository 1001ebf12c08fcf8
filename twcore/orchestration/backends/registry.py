"""The backends by name."""

from __future__ import annotations

from twcore.contract.errors import ConfigError, did_you_mean
from twcore.orchestration.backends.base import Backend, SweepOptions
from twcore.orchestration.backends.local import LocalBackend
from twcore.orchestration.backends.ray_cluster import RayBackend
from twcore.orchestration.backends.serial import SerialBackend

BACKENDS: dict[str, type[Backend]] = {
    backend.name: backend for backend in (SerialBackend, LocalBackend, RayBackend)
}


def get_backend(options: SweepOptions) -> Backend:
    """The backend named by ``options.backend`` (ConfigError listing the valid ones)."""
    if options.backend not in BACKENDS:
        suggestion = did_you_mean(options.backend, BACKENDS)
        raise ConfigError(
            f"--backend {options.backend!r} is not a backend{suggestion}; "
            f"valid: {', '.join(BACKENDS)}"
        )
    return BACKENDS[options.backend](options)
