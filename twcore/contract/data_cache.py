"""A disk cache for tensors that tasks derive from their raw data.

Preparing a task's data (decoding a dataset, overlaying images, generating instances, solving
for reference decisions) can take seconds; :func:`cached_tensors` does it once per distinct
configuration and loads the result afterwards. Files live under the user's cache directory
(``$TWCORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/twcore``, else ``~/.cache/twcore``), one file per
(name, key). Writes are atomic (temporary file, then rename), so a killed process never leaves a
partial file under the final name. Caching is turned off with ``TWCORE_CACHE_DIR=off``; a cache
directory that cannot be written only costs speed.

Each file holds the canonical JSON of the (name, key) that produced it, the tensors, and an
HMAC-SHA256 over both (and the format's magic line) made with a per-user secret: 32 random bytes
in ``cache.key`` under ``$TWCORE_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/twcore``, else
``~/.config/twcore``, created on first use with mode 0600. The secret lives outside the cache
directory on purpose: whoever can write the cache cannot sign what they write.

What the cache defends against: a file that is truncated or corrupt; a file from another
configuration (copied or renamed onto this entry's path); a file from another twcore version
(another magic line); a file rewritten by anyone who cannot read your key file, checksum or
not. Each of these is reported with one warning and rebuilt. Loading never executes code, even
for a file that passes every check, because tensors are read with
``torch.load(weights_only=True)``. A key file that other users could read or write, or that you
do not own, is not trusted: the cache is off (with a warning) until it is deleted, and the next
run makes a new one.

What it does not defend against: anyone who can read your key file or run code as you (they
can sign any file), and anyone who can write the cache directory deleting or damaging files,
which only costs a rebuild.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import stat
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from twcore.autodiff.data_parallel import process_local
from twcore.contract.atomic_files import atomic_write

CACHE_ENV = "TWCORE_CACHE_DIR"
CONFIG_ENV = "TWCORE_CONFIG_DIR"
KEY_FILE = "cache.key"
KEY_SIZE = 32
# The file layout: magic line, HMAC tag, identity length (4 bytes, big-endian), identity, payload.
_MAGIC = b"twcore-tensor-cache-v2\n"
_MAGIC_FAMILY = b"twcore-tensor-cache-"
_TAG_SIZE = 32
_LENGTH_SIZE = 4
_CORRUPT = "is corrupt or incomplete"


def cache_root() -> Path | None:
    """The directory holding cached files, or None when caching is turned off."""
    configured = os.environ.get(CACHE_ENV)
    if configured is not None:
        return None if configured.strip().lower() in ("", "off", "0", "none") else Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "twcore"


def cache_key_path() -> Path:
    """Where the per-user secret that signs cache files is kept (outside the cache directory)."""
    configured = os.environ.get(CONFIG_ENV)
    if configured:
        return Path(configured) / KEY_FILE
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else Path.home() / ".config"
    return base / "twcore" / KEY_FILE


def cache_path(name: str, key: Mapping[str, Any], root: Path | None = None) -> Path | None:
    """Where the tensors of (`name`, `key`) are cached (None when caching is turned off)."""
    root = cache_root() if root is None else root
    if root is None:
        return None
    digest = hashlib.sha256(_identity(name, key)).hexdigest()[:20]
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return root / "data" / f"{safe_name}-{digest}.pt"


def cached_tensors(
    name: str, key: Mapping[str, Any], build: Callable[[], Mapping[str, Tensor]]
) -> dict[str, Tensor]:
    """`build()`'s tensors, loaded from the cache when (`name`, `key`) was built before.

    Args:
        name: what is cached, e.g. the task name (part of the file name).
        key: every value the tensors depend on (config values, a format version), JSON-able.
        build: computes ``{name: tensor}`` (CPU tensors) when the cache has no valid entry;
            it runs under :func:`~twcore.autodiff.data_parallel.process_local`.

    Returns:
        ``{name: tensor}`` on the CPU, equal to what `build` returned.
    """
    path = cache_path(name, key)
    secret = None if path is None else _cache_secret()
    identity = _identity(name, key)
    if path is not None and secret is not None and path.exists():
        loaded, problem = _read(path, identity, secret)
        if loaded is not None:
            return loaded
        warnings.warn(f"twcore data cache file {path} {problem}; rebuilding it", stacklevel=2)
    # Whether a process builds or loads depends on the file system, not on the other processes
    # of a data-parallel run, so a build is this process's own work (no collectives inside).
    with process_local():
        built = build()
    tensors = {k: v.detach().cpu().contiguous() for k, v in built.items()}
    if path is not None and secret is not None:
        _write(path, _serialise(identity, tensors, secret))
    return tensors


def _identity(name: str, key: Mapping[str, Any]) -> bytes:
    """The canonical JSON of (name, key): the file name's hash and what a file must hold."""
    return json.dumps({"name": name, "key": key}, sort_keys=True, default=str).encode()


def _tag(secret: bytes, identity: bytes, payload: bytes) -> bytes:
    """HMAC-SHA256 over everything in the file but the tag itself."""
    mac = hmac.new(secret, _MAGIC, hashlib.sha256)
    mac.update(len(identity).to_bytes(_LENGTH_SIZE, "big"))
    mac.update(identity)
    mac.update(payload)
    return mac.digest()


def _serialise(identity: bytes, tensors: Mapping[str, Tensor], secret: bytes) -> bytes:
    buffer = io.BytesIO()
    torch.save(dict(tensors), buffer)
    payload = buffer.getvalue()
    length = len(identity).to_bytes(_LENGTH_SIZE, "big")
    return _MAGIC + _tag(secret, identity, payload) + length + identity + payload


def _read(path: Path, identity: bytes, secret: bytes) -> tuple[dict[str, Tensor] | None, str]:
    """(the cached tensors, "") or (None, what is wrong with the file)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return None, f"cannot be read ({error})"
    if not data.startswith(_MAGIC):
        older = data.startswith(_MAGIC_FAMILY)
        return None, "was written by another twcore version" if older else _CORRUPT
    start = len(_MAGIC) + _TAG_SIZE + _LENGTH_SIZE
    if len(data) < start:
        return None, _CORRUPT
    tag = data[len(_MAGIC) : len(_MAGIC) + _TAG_SIZE]
    length = int.from_bytes(data[start - _LENGTH_SIZE : start], "big")
    stored_identity, payload = data[start : start + length], data[start + length :]
    if not hmac.compare_digest(tag, _tag(secret, stored_identity, payload)):
        # Damage and forgery look the same without the key; name both.
        return None, f"was tampered with, signed with another cache key, or {_CORRUPT}"
    if stored_identity != identity:
        return None, "holds another configuration's data (copied or renamed onto this path)"
    try:
        loaded = torch.load(io.BytesIO(payload), weights_only=True)
    except Exception:  # signed by us yet unreadable: written by a torch this one cannot read
        return None, _CORRUPT
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        return None, _CORRUPT
    return loaded, ""


def _write(path: Path, data: bytes) -> None:
    """Write atomically; a read-only or full cache directory only costs speed."""
    try:
        atomic_write(path, lambda handle: handle.write(data))
    except OSError as error:
        warnings.warn(f"twcore data cache could not write {path}: {error}", stacklevel=3)


class _UntrustedKey(Exception):
    """The key file exists but others could read or replace it."""


def _cache_secret() -> bytes | None:
    """The per-user signing secret, made on first use; None (with a warning) if unusable."""
    path = cache_key_path()
    try:
        if not path.exists():
            _create_key(path)
        return _read_key(path)
    except _UntrustedKey as problem:
        reason = f"its key file {path} {problem}; delete it and twcore makes a new one"
    except OSError as error:
        reason = f"its key file {path} cannot be made or read ({error})"
    warnings.warn(f"twcore data cache is off: {reason}", stacklevel=3)
    return None


def _create_key(path: Path) -> None:
    """Write 32 random bytes with mode 0600 and publish them without replacing an existing key."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(secrets.token_bytes(KEY_SIZE))
            file.flush()
            os.fsync(file.fileno())
        # A hard link fails if the name exists: a process that raced us keeps its key, and files
        # it already signed stay valid (os.replace would swap the key under it).
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _read_key(path: Path) -> bytes:
    """The key's bytes; _UntrustedKey if the file is not a private file of this user's."""
    # O_NOFOLLOW: a symlink could point at a file someone else controls.
    handle = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(handle, "rb") as file:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise _UntrustedKey("is not a regular file")
        if os.name == "posix":
            if status.st_uid != os.getuid():
                raise _UntrustedKey(f"is owned by uid {status.st_uid}, not by you ({os.getuid()})")
            if status.st_mode & 0o077:
                mode = stat.S_IMODE(status.st_mode)
                raise _UntrustedKey(f"is open to other users (mode {mode:04o}, must be 0600)")
        secret = file.read(KEY_SIZE + 1)
    if len(secret) != KEY_SIZE:
        raise _UntrustedKey(f"holds {len(secret)} bytes, not a {KEY_SIZE}-byte key")
    return secret
