"""Reading an offline W&B run back from its ``.wandb`` file, without a W&B server.

``wandb.Api()`` needs a server, so tests and local tools read the run's transaction log
directly. The file is a LevelDB-style log: a 7-byte header (``:W&B``, magic, version), then
32 KiB blocks of records, each with a 7-byte header (checksum, length, type) and a chunk of a
protobuf ``Record``; a record may span blocks (FIRST/MIDDLE/LAST chunks).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_FILE_HEADER = 7
_RECORD_HEADER = 7
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What an offline W&B run recorded."""

    run_id: str = ""
    project: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    """Each logged artifact's ``name``, ``type``, ``aliases`` and file ``paths``."""


def find_offline_runs(run_dir: Path) -> list[Path]:
    """The ``.wandb`` files of the W&B runs under a twcore run directory, oldest first."""
    return sorted(Path(run_dir).glob("wandb/*run-*/run-*.wandb"))


def read_offline_run(path: Path) -> OfflineRun:
    """Parse an offline W&B run into config, history rows and summary: its ``run-<id>.wandb``
    file, or the ``offline-run-*`` folder that holds it (the one ``wandb sync`` uploads)."""
    from wandb.proto import wandb_internal_pb2

    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("run-*.wandb"))
        if len(files) != 1:
            raise FileNotFoundError(
                f"{path} holds {len(files)} run-*.wandb files; give a W&B run folder "
                "(offline-run-…) or its .wandb file (find_offline_runs(run_dir) lists them)"
            )
        path = files[0]
    run = OfflineRun()
    for payload in _record_payloads(path.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            _read_run(record.run, run)
        elif kind == "config":
            _apply_updates(run.config, record.config.update)
        elif kind == "history":
            row: dict[str, Any] = {}
            _apply_updates(row, record.history.item)
            run.history.append(row)
        elif kind == "summary":
            _apply_updates(run.summary, record.summary.update)
        elif kind == "artifact":
            artifact = record.artifact
            run.artifacts.append(
                {
                    "name": artifact.name,
                    "type": artifact.type,
                    "aliases": list(artifact.aliases),
                    "paths": [entry.path for entry in artifact.manifest.contents],
                }
            )
    return run


def is_complete(path: Path) -> bool:
    """Whether the run's transaction log ends with its exit record (the run has been closed).

    Only the last blocks are parsed, so this stays cheap for long runs. A record W&B is still
    writing (read half-written) means the log is not complete yet.
    """
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    start = max(0, (len(data) // _BLOCK - 3) * _BLOCK)
    try:
        payloads = _record_payloads(data, start=start)
    except ValueError:  # the header or a chunk not fully written yet
        return False
    for payload in payloads:
        record = wandb_internal_pb2.Record()
        try:
            record.ParseFromString(payload)
        except DecodeError:
            return False
        if record.WhichOneof("record_type") == "exit":
            return True
    return False


def _read_run(record: Any, run: OfflineRun) -> None:
    run.run_id = record.run_id
    run.project = record.project
    run.group = record.run_group
    run.job_type = record.job_type
    run.tags = list(record.tags)
    run.name = record.display_name
    _apply_updates(run.config, record.config.update)


def _apply_updates(target: dict[str, Any], updates: Any) -> None:
    """Set each item's value at its key path (``nested_key`` lists describe nested dicts)."""
    for item in updates:
        path = [item.key] if item.key else list(item.nested_key)
        node = target
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = json.loads(item.value_json)


def _record_payloads(data: bytes, *, start: int = 0) -> list[bytes]:
    """Record payloads from block-aligned offset `start` (chunks continuing a record that began
    before `start` are skipped)."""
    if data[:4] != b":W&B":
        raise ValueError("not a W&B transaction log (missing ':W&B' header)")
    payloads: list[bytes] = []
    pending: bytes | None = b"" if start == 0 else None
    position = max(start, _FILE_HEADER)
    while position + _RECORD_HEADER <= len(data):
        left_in_block = _BLOCK - position % _BLOCK
        if left_in_block < _RECORD_HEADER:
            position += left_in_block
            continue
        _checksum, length, chunk_type = struct.unpack_from("<IHB", data, position)
        position += _RECORD_HEADER
        chunk = data[position : position + length]
        position += length
        if chunk_type == 0 and length == 0:
            break  # zero padding: the rest of the file was never written
        if chunk_type == _FULL:
            payloads.append(chunk)
        elif chunk_type == _FIRST:
            pending = chunk
        elif chunk_type == _MIDDLE:
            pending = None if pending is None else pending + chunk
        elif chunk_type == _LAST:
            if pending is not None:
                payloads.append(pending + chunk)
            pending = b""
        else:
            raise ValueError(f"corrupt W&B transaction log: chunk type {chunk_type}")
    return payloads
