"""A disk cache for tensors that tasks derive from their raw data.

Preparing a task's data (decoding a dataset, overlaying images, generating instances, solving
for reference decisions) can take seconds; :func:`cached_tensors` does it once per distinct
configuration and loads the result afterwards. Files live under the user's cache directory
(``$TWCORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/twcore``, else ``~/.cache/twcore``), one file per
(name, key). Each file carries a SHA-256 checksum of its payload: a truncated, corrupt or foreign
file is detected, reported with a warning and rebuilt. Writes are atomic (temporary file, then
rename), so a killed process never leaves a partial file under the final name. Caching is turned
off with ``TWCORE_CACHE_DIR=off``; a cache directory that cannot be written only costs speed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

CACHE_ENV = "TWCORE_CACHE_DIR"
_MAGIC = b"twcore-tensor-cache-v1\n"
_DIGEST_SIZE = 32


def cache_root() -> Path | None:
    """The directory holding cached files, or None when caching is turned off."""
    configured = os.environ.get(CACHE_ENV)
    if configured is not None:
        return None if configured.strip().lower() in ("", "off", "0", "none") else Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "twcore"


def cache_path(name: str, key: Mapping[str, Any], root: Path | None = None) -> Path | None:
    """Where the tensors of (`name`, `key`) are cached (None when caching is turned off)."""
    root = cache_root() if root is None else root
    if root is None:
        return None
    encoded = json.dumps({"name": name, "key": key}, sort_keys=True, default=str)
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:20]
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return root / "data" / f"{safe_name}-{digest}.pt"


def cached_tensors(
    name: str, key: Mapping[str, Any], build: Callable[[], Mapping[str, Tensor]]
) -> dict[str, Tensor]:
    """`build()`'s tensors, loaded from the cache when (`name`, `key`) was built before.

    Args:
        name: what is cached, e.g. the task name (part of the file name).
        key: every value the tensors depend on (config values, a format version), JSON-able.
        build: computes ``{name: tensor}`` (CPU tensors) when the cache has no valid entry.

    Returns:
        ``{name: tensor}`` on the CPU, equal to what `build` returned.
    """
    path = cache_path(name, key)
    if path is not None and path.exists():
        loaded = _read(path)
        if loaded is not None:
            return loaded
        warnings.warn(
            f"twcore data cache file {path} is corrupt or incomplete; rebuilding it",
            stacklevel=2,
        )
    tensors = {k: v.detach().cpu().contiguous() for k, v in build().items()}
    if path is not None:
        _write(path, tensors)
    return tensors


def _serialise(tensors: Mapping[str, Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(dict(tensors), buffer)
    payload = buffer.getvalue()
    return _MAGIC + hashlib.sha256(payload).digest() + payload


def _read(path: Path) -> dict[str, Tensor] | None:
    """The cached tensors, or None if the file is not a complete, intact cache file."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    header = len(_MAGIC) + _DIGEST_SIZE
    if len(data) < header or not data.startswith(_MAGIC):
        return None
    digest, payload = data[len(_MAGIC) : header], data[header:]
    if hashlib.sha256(payload).digest() != digest:
        return None
    try:
        loaded = torch.load(io.BytesIO(payload), weights_only=True)
    except Exception:  # an intact checksum over a payload torch cannot read: a foreign file
        return None
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        return None
    return loaded


def _write(path: Path, tensors: Mapping[str, Tensor]) -> None:
    """Write atomically; a read-only or full cache directory only costs speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(_serialise(tensors))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as error:
        warnings.warn(f"twcore data cache could not write {path}: {error}", stacklevel=3)
