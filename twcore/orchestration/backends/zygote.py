"""The process that forks warm trial workers: ``python -m twcore.orchestration.backends.zygote``.

It imports torch, W&B and twcore once (about 7 s of every fresh ``python -m twcore`` process on
a slow 2-core machine, more than many trials' training), then forks one child per request. A
child is what ``python -m twcore ARGS`` would be: its own session, the request's environment,
working directory and log file as stdout and stderr, and ``twcore``'s exit code; only the
imports are shared. A crash of a child touches neither this process nor its other children.

The protocol is one JSON object per line, never pickle. Requests, on stdin::

    {"id": 3, "argv": ["run", "--config", "F", "-q"], "env": {...}, "cwd": "/x", "log": "/x/l"}

Replies, on stdout: ``{"id": 3, "pid": 1234}`` once the child is forked (``{"id": 3, "error":
"..."}`` if it could not be), and ``{"pid": 1234, "code": 0}`` when it ends (``code`` as
:attr:`subprocess.Popen.returncode` gives it: negative for a signal). The process exits when its
stdin closes, leaving any child still running to finish (each watches its sweep's process).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import select
import signal
import sys
import threading
import traceback
from typing import Any

from twcore.orchestration.backends.trial_callbacks import PARENT_ENV

PRELOAD = (
    "torch",
    "torch._dynamo",  # every torch optimizer imports it on its first parameter group
    "wandb",
    "wandb.sdk.launch.inputs.internal",  # each wandb.init imports it
    "twcore.orchestration.cli.main",
    "twcore.orchestration.cli.commands",
    "twcore.orchestration.api",
)
"""Modules imported once, before any fork (one that fails to import is left to the child)."""
POLL_S = 0.05


def preload() -> None:
    """Import :data:`PRELOAD` (without running any torch op, so no thread pool exists yet)."""
    for name in PRELOAD:
        # An optional module missing or broken: the child imports it, or fails as it would.
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def serve(requests_fd: int, replies_fd: int) -> None:
    """Fork a child per request line read from `requests_fd` until it closes, and write each
    child's pid and exit code to `replies_fd`."""
    pending = b""
    open_input = True
    while open_input:
        readable, _, _ = select.select([requests_fd], [], [], POLL_S)
        if readable:
            chunk = os.read(requests_fd, 65536)
            open_input = bool(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                request = _parse(line)
                if request is not None:
                    _reply(replies_fd, _fork(request, replies_fd))
        _report_exits(replies_fd)


def _parse(line: bytes) -> dict[str, Any] | None:
    """A request, or None for a blank or malformed line (skipped: its sender times out)."""
    try:
        request = json.loads(line)
    except ValueError:
        return None
    return request if isinstance(request, dict) and "id" in request else None


def _fork(request: dict[str, Any], replies_fd: int) -> dict[str, Any]:
    zygote = os.getpid()
    _flush_streams()  # nothing a preloaded module printed is copied into the child's log
    # A SIGINT sent to the child before its interpreter has recovered from the fork would be
    # forgotten (CPython clears a signal it caught then): blocked, it waits for the child.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        pid = os.fork()
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        return {"id": request["id"], "error": f"fork failed: {exc}"}
    if pid != 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    else:  # the child never returns; its stdin (`requests_fd`) becomes /dev/null
        code = 130  # a Ctrl-C forwarded before the run's own handlers exist
        try:
            os.close(replies_fd)
            code = _run_child(request, zygote)
        finally:
            os._exit(code)
    return {"id": request["id"], "pid": pid}


def _run_child(request: dict[str, Any], zygote: int) -> int:
    """Become ``python -m twcore ARGV`` for `request`; the exit code, after what a fresh
    interpreter does at exit (join non-daemon threads, run the exit handlers, flush)."""
    code = 1
    try:
        os.setsid()  # Ctrl-C in the sweep's terminal reaches the sweep, which forwards one
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # A SIGINT already sent arrives now, as KeyboardInterrupt: exit 130 before any run.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        _redirect(request["log"])
        os.environ.clear()
        os.environ.update(request["env"])
        if PARENT_ENV in os.environ:  # this process's parent, alive as long as the sweep is
            os.environ[PARENT_ENV] = str(zygote)
        # W&B records the program from ``__main__``, here the zygote's module: name the one a
        # fresh worker runs.
        os.environ.setdefault("WANDB_PROGRAM", "-m twcore.__main__")
        os.chdir(request["cwd"])
        _set_path(request["cwd"], os.environ.get("PYTHONPATH", ""))
        _set_threads(os.environ.get("OMP_NUM_THREADS"))
        sys.argv = ["twcore", *request["argv"]]  # as ``python -m twcore`` records its command
        from twcore.orchestration.cli.main import main

        code = main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:  # SIGINT before ``twcore`` took over its handling: stopped
        code = 130
    except BaseException:
        traceback.print_exc()
    try:
        shutdown = getattr(threading, "_shutdown", None)
        if shutdown is not None:
            shutdown()
        atexit._run_exitfuncs()
    finally:
        _flush_streams()
    return code


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _redirect(log_path: str) -> None:
    """stdin from /dev/null; stdout and stderr appended to `log_path`."""
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)


def _set_path(cwd: str, python_path: str) -> None:
    """``sys.path`` as ``python -m`` in `cwd` with `python_path` would start it: the working
    directory first, then the ``PYTHONPATH`` entries, then the zygote's (site) entries."""
    entries = [cwd, *(entry for entry in python_path.split(os.pathsep) if entry)]
    rest = [entry for entry in sys.path[1:] if entry not in entries]
    sys.path[:] = [*dict.fromkeys(entries), *rest]
    importlib.invalidate_caches()


def _set_threads(count: str | None) -> None:
    """Torch's threads from the request's ``OMP_NUM_THREADS`` (the zygote's was read at import)."""
    if count and count.isdigit() and int(count) > 0:
        import torch

        torch.set_num_threads(int(count))


def _report_exits(replies_fd: int) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _reply(replies_fd, {"pid": pid, "code": os.waitstatus_to_exitcode(status)})


def _reply(replies_fd: int, message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(replies_fd, data) :]


def main() -> int:
    """Preload, then serve requests on stdin; stray prints of a preloaded module go to stderr,
    never into the replies. Refuses to serve (exit 1, so the sweep starts fresh processes) if
    the imports left a Python thread running: a fork copies only the thread that calls it, and
    a lock another thread held stays locked in the child. (Native pools that handle a fork
    themselves, as OpenBLAS's does, may run.)"""
    replies_fd = os.dup(1)
    os.dup2(2, 1)
    # SIGINT keeps Python's handler (the zygote has its own session: only the sweep sends it
    # one): a child inherits it, so a Ctrl-C forwarded before its run starts still stops it.
    preload()
    if threading.active_count() > 1:
        names = ", ".join(thread.name for thread in threading.enumerate())
        print(f"twcore zygote: threads running after the imports ({names})", file=sys.stderr)
        return 1
    serve(0, replies_fd)
    return 0


if __name__ == "__main__":
    code = main()
    _flush_streams()
    # At once, without the interpreter's teardown of torch and W&B (a second or more): the
    # sweep is gone, and each running child stops as soon as it sees this process gone.
    os._exit(code)
