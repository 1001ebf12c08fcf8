"""Argument parsing, dispatch, and the mapping of errors to one-line messages and exit codes.

Exit codes: 0 success; 1 a run failed (diverged, or a plugin raised); 2 bad input (unknown key or
plugin, wrong type, incompatible pairing, ...); 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

import twcore
from twcore.cli import commands
from twcore.console import error
from twcore.errors import DivergenceError, UsageError

DEBUG_ENV = "TWCORE_DEBUG"


class _Parser(argparse.ArgumentParser):
    """argparse that reports mistakes as one ``twcore: error:`` line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        error(f"{message} (see `{self.prog} --help`)")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The ``twcore`` parser with its subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser = _Parser(
        prog="twcore",
        parents=[common],
        description="Learned loss weighting and learned losses: run, compare and inspect.",
    )
    parser.add_argument("--version", action="version", version=f"twcore {twcore.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser(
        "run",
        parents=[common],
        help="train one run (or a sweep with -m)",
        description="Train with key=value overrides, e.g. "
        "`twcore run method=ew task=toy-multitask seed=1 optim.lr=0.01`.",
    )
    run.add_argument(
        "-m",
        "--multirun",
        action="store_true",
        help="run the cartesian product of comma-separated values (key=a,b,c)",
    )
    _add_training_arguments(run, config_file=True)
    run.set_defaults(handler=commands.run)

    resume = sub.add_parser(
        "resume",
        parents=[common],
        help="continue a run from its checkpoint",
        description="Continue a stopped or killed run; `steps=N` trains longer.",
    )
    resume.add_argument("run_dir", help="the run directory")
    _add_training_arguments(resume, config_file=False)
    resume.set_defaults(handler=commands.resume)

    compare = sub.add_parser(
        "compare",
        parents=[common],
        help="compare every installed method on a task (main job)",
        description="Run every installed method that fits the task over seeds and print a table. "
        "Defaults: the default task and model, seed=0,1,2.",
    )
    _add_training_arguments(compare, config_file=True)
    compare.set_defaults(handler=commands.compare)

    plugins = sub.add_parser("plugins", parents=[common], help="list installed plugins")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(handler=commands.plugins)

    show = sub.add_parser(
        "show",
        parents=[common],
        help="show config keys of a plugin or a run",
        description="`twcore show method=NAME` lists every key with type, "
        "default and help; no argument lists the run-level keys.",
    )
    show.add_argument("selection", nargs="*", metavar="kind=NAME")
    show.set_defaults(handler=commands.show)
    return parser


def _add_training_arguments(parser: argparse.ArgumentParser, *, config_file: bool) -> None:
    if config_file:
        parser.add_argument(
            "--config", metavar="FILE", help="YAML config file (overrides win over it)"
        )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    parser.add_argument("overrides", nargs="*", metavar="key=value")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``twcore`` command; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in arguments or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        options = build_parser().parse_args(arguments)
        return int(options.handler(options) or 0)
    except (UsageError, DivergenceError) as exc:
        if debug:
            traceback.print_exc()
        error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        error(f"{type(exc).__name__}: {text} (rerun with --debug for the traceback)")
        return 1
