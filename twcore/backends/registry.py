"""The backends by name."""

from __future__ import annotations

from twcore.backends.base import Backend
from twcore.backends.local import LocalBackend
from twcore.backends.ray_cluster import RayBackend
from twcore.backends.serial import SerialBackend

BACKENDS: dict[str, type[Backend]] = {
    backend.name: backend for backend in (SerialBackend, LocalBackend, RayBackend)
}
