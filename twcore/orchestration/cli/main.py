"""Argument parsing, dispatch, and the mapping of errors to one-line messages and exit codes.

Exit codes: 0 success; 1 a run failed (diverged, or a plugin raised); 2 bad input (unknown key or
plugin, wrong type, incompatible pairing, ...); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from twcore.contract.errors import TwcoreError, first_line
from twcore.orchestration.console import error
from twcore.orchestration.engine.stopping import stop_signals_interrupt
from twcore.orchestration.user_plugins import import_plugins
from twcore.version import __version__

DEBUG_ENV = "TWCORE_DEBUG"


class _Parser(argparse.ArgumentParser):
    """argparse that reports mistakes as one ``twcore: error:`` line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        error(f"{message} (see `{self.prog} --help`)")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The ``twcore`` parser with its subcommands."""
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    common = argparse.ArgumentParser(add_help=False, parents=[debug])
    _add_plugins_flag(common, dest="plugins")
    parser = _Parser(
        prog="twcore",
        parents=[debug],
        description="Learned loss weighting and learned losses: run, compare and inspect.",
    )
    # Before the subcommand it has a name of its own: the subcommand's parser would overwrite it.
    _add_plugins_flag(parser, dest="plugins_before_command")
    parser.add_argument("--version", action="version", version=f"twcore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in SUBCOMMANDS:
        add(sub, common)
    return parser


def _add_plugins_flag(parser: argparse.ArgumentParser, *, dest: str) -> None:
    parser.add_argument(
        "--plugins",
        action="append",
        dest=dest,
        metavar="MODULE[,MODULE]",
        default=argparse.SUPPRESS,
        help="import these modules first: plugins your code registers (twcore.register); "
        "every worker process imports them too",
    )


Subparsers = argparse._SubParsersAction
Handler = Callable[[argparse.Namespace], int]


def _command(module: str, name: str) -> Handler:
    """The command `name` of ``twcore.orchestration.cli.<module>``, imported when it runs: so
    ``--help``, ``--version``, ``plugins`` and ``show`` import none of the training code."""

    def handler(options: argparse.Namespace) -> int:
        command: Handler = getattr(
            importlib.import_module(f"twcore.orchestration.cli.{module}"), name
        )
        return command(options)

    handler.target = (f"twcore.orchestration.cli.{module}", name)  # type: ignore[attr-defined]
    return handler


def _add_run(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    run = sub.add_parser(
        "run",
        parents=[common],
        help="train one run (or a sweep with -m)",
        description="Train with key=value overrides, e.g. "
        "`twcore run method=NAME task=NAME seed=1 optim.lr=0.01`.",
    )
    run.add_argument(
        "-m",
        "--multirun",
        action="store_true",
        help="run the cartesian product of comma-separated values (key=a,b,c)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the composed configuration (YAML) after checking it, and train nothing",
    )
    _add_training_arguments(run, config_file=True)
    _add_backend_arguments(run)
    run.set_defaults(handler=_command("commands", "run"))


def _add_sweep(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    sweep = sub.add_parser(
        "sweep",
        parents=[common],
        help="run a grid of runs (key=a,b,c), in parallel or on Ray",
        description="Run the cartesian product of comma-separated values, e.g. `twcore sweep "
        "method=A,B seed=0,1,2 --backend local --workers 4`. Re-running with the same run_dir "
        "skips completed trials.",
    )
    _add_training_arguments(sweep, config_file=True)
    _add_backend_arguments(sweep)
    sweep.set_defaults(handler=_command("commands", "sweep"))


def _add_tune(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    tune = sub.add_parser(
        "tune",
        parents=[common],
        help="search hyperparameters with Optuna (TPE, pruning, a study database)",
        description="Search key=DISTRIBUTION keys (uniform(a,b), loguniform(a,b), int(a,b), "
        "logint(a,b), choice(a,b,...)); other key=value are fixed, e.g. `twcore tune "
        "method=ldro optim.lr=loguniform(1e-4,1e-1) --trials 20 --seeds 0,1`. Re-running with "
        "the same run_dir continues the study; several processes may share one (--storage).",
    )
    _add_training_arguments(tune, config_file=True)
    tune.add_argument("--space", metavar="FILE", help="YAML file of key: DISTRIBUTION")
    tune.add_argument(
        "--trials", type=int, default=None, help="the study's budget (default: grid size or 20)"
    )
    tune.add_argument(
        "--seeds", default=None, help="seeds per configuration, e.g. 0,1,2 (default: seed)"
    )
    tune.add_argument("--sampler", default="tpe", help="tpe (default), random or grid")
    tune.add_argument("--pruner", default="median", help="median (default), halving or none")
    tune.add_argument(
        "--objective",
        default=None,
        help="a validation metric: METRIC (its declared direction), max:METRIC or min:METRIC "
        "(default: the task's primary metric)",
    )
    tune.add_argument(
        "--aggregate", default="mean", help="seeds into one value: mean (default) or worst"
    )
    tune.add_argument(
        "--storage",
        default=None,
        help="study database URL, e.g. postgresql://user:pw@host/db (default: SQLite in the "
        "tune directory)",
    )
    tune.add_argument("--study", default=None, help="study name (default: the directory name)")
    tune.add_argument("--sampler-seed", type=int, default=0, help="the sampler's seed")
    tune.add_argument(
        "--startup-trials",
        type=int,
        default=None,
        help="random trials before TPE, and before the median pruner prunes (default: "
        "a quarter of the budget, 2 to 10)",
    )
    tune.add_argument(
        "--prune-after",
        type=int,
        default=0,
        metavar="STEPS",
        help="prune no trial before this step (default 0: from the first evaluation)",
    )
    _add_backend_arguments(tune)
    tune.set_defaults(handler=_command("commands", "tune"))


def _add_resume(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    resume = sub.add_parser(
        "resume",
        parents=[common],
        help="continue a run from its checkpoint",
        description="Continue a stopped or killed run; `steps=N` trains longer.",
    )
    resume.add_argument("run_dir", help="the run directory")
    _add_training_arguments(resume, config_file=False)
    resume.set_defaults(handler=_command("commands", "resume"))


def _add_compare(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    compare = sub.add_parser(
        "compare",
        parents=[common],
        help="compare every installed method on a task (main job)",
        description="Run every installed method that fits the task over seeds and print a table. "
        "Defaults: the default task and model, seed=0,1,2.",
    )
    _add_training_arguments(compare, config_file=True)
    _add_backend_arguments(compare)
    compare.set_defaults(handler=_command("commands", "compare"))


def _add_report(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    report = sub.add_parser(
        "report",
        parents=[common],
        help="tables and plots over the runs of sweep directories",
        description="Write report.md and report.json (mean ± sample std over seeds and n; the "
        "best of each column in the direction its task declares, in bold), figures (metric "
        "over steps with seed bands, the main task's metric or average against worst case, "
        "smoothed learned weights) and a W&B summary run.",
    )
    report.add_argument("sweep_dirs", nargs="+", metavar="SWEEP_DIR")
    report.add_argument("--out", default=None, help="output directory (default: the first)")
    report.add_argument("--no-wandb", action="store_true", help="do not log a W&B summary run")
    report.add_argument(
        "--no-plots", action="store_true", help="tables and workspace only, no figures"
    )
    report.add_argument(
        "--format",
        default="png",
        help="figure formats, comma-separated: png, pdf, svg (default png; the first is linked "
        "from report.md)",
    )
    report.add_argument("--dpi", type=int, default=150, help="resolution of PNGs (default 150)")
    report.set_defaults(handler=_command("reports", "report"))


def _add_reproduce(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    reproduce = sub.add_parser(
        "reproduce",
        parents=[common],
        help="run every installed plugin's paper-reproduction grids: one report, one claims ledger",
        description="Each plugin contributes its grids and the claims they test; --quick runs "
        "the small versions (under 5 minutes on 2 cores). The report and the claims ledger "
        "(CLAIMS.md, claims.json) are written next to the runs or into --report-dir. A grid "
        "whose plugins are not installed is skipped with its reason. Extra key=value settings "
        "apply to every run.",
    )
    reproduce.add_argument("--quick", action="store_true", help="the small version of each grid")
    reproduce.add_argument("--only", nargs="*", default=[], metavar="GRID", help="grids to run")
    reproduce.add_argument(
        "--list", action="store_true", help="list the installed grids, their claims and plugins"
    )
    reproduce.add_argument("--out", default=None, help="directory of the runs")
    reproduce.add_argument(
        "--report-dir",
        default=None,
        help="where the report and the claims ledger go (default: --out)",
    )
    reproduce.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: report and decide the claims from the runs already in --out",
    )
    reproduce.add_argument(
        "--rewrite-ledger",
        nargs="+",
        default=[],
        metavar="DIR",
        help="run nothing and read no runs: write each DIR's CLAIMS.md and claims.json again "
        "from its claims.json (numbers and verdicts as recorded) with the installed grids' "
        "current claim readings",
    )
    reproduce.add_argument(
        "--no-plots", action="store_true", help="the report's tables without figures"
    )
    reproduce.add_argument("overrides", nargs="*", metavar="key=value")
    _add_backend_arguments(reproduce)
    reproduce.set_defaults(handler=_command("commands", "reproduce"))


def _add_bench(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    bench = sub.add_parser(
        "bench",
        parents=[common],
        help="time per step of every installed method ÷ a baseline method's, on one task",
        description="e.g. `twcore bench task=NAME model=NAME --steps 300`; every method that "
        "fits the task, in one process, fastest of --repeats runs.",
    )
    bench.add_argument("--steps", type=int, default=300, help="steps per run (default 300)")
    bench.add_argument("--repeats", type=int, default=3, help="runs per method (default 3)")
    bench.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads while timing (default: torch's, one per core); 1 isolates the "
        "methods' own cost from parallel speed-ups",
    )
    bench.add_argument(
        "--baseline",
        default=None,
        metavar="METHOD",
        help="the method the ratios divide by (default: the installed default method)",
    )
    bench.add_argument("overrides", nargs="*", metavar="key=value")
    bench.set_defaults(handler=_command("commands", "bench"))


def _add_plugins(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    plugins = sub.add_parser("plugins", parents=[common], help="list installed plugins")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.add_argument(
        "--check",
        action="store_true",
        help="also import every plugin's class and report those that fail (exit code 1)",
    )
    plugins.set_defaults(handler=_command("listing", "plugins"))


def _add_show(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    show = sub.add_parser(
        "show",
        parents=[common],
        help="show config keys of a plugin or a run",
        description="`twcore show method=NAME` lists every key with type, "
        "default and help; no argument lists the run-level keys.",
    )
    show.add_argument("selection", nargs="*", metavar="kind=NAME")
    show.set_defaults(handler=_command("listing", "show"))


SUBCOMMANDS = (
    _add_run,
    _add_sweep,
    _add_tune,
    _add_resume,
    _add_compare,
    _add_report,
    _add_reproduce,
    _add_bench,
    _add_plugins,
    _add_show,
)


def _add_training_arguments(parser: argparse.ArgumentParser, *, config_file: bool) -> None:
    if config_file:
        parser.add_argument(
            "--config", metavar="FILE", help="YAML config file (overrides win over it)"
        )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    parser.add_argument("overrides", nargs="*", metavar="key=value")


def _add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        default="serial",
        help="serial (this process, the default), local (worker processes) or ray",
    )
    parser.add_argument("--workers", type=int, default=2, help="trials at once (default 2)")
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="further attempts for a crashed trial, resumed from its checkpoint (default 1)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per trial (default: cores ÷ workers)",
    )
    parser.add_argument(
        "--ray-address", default=None, help="Ray cluster to join (auto, host:port); default: local"
    )
    parser.add_argument(
        "--cold-start",
        action="store_true",
        help="local workers start as fresh processes, not forked from one that imported torch",
    )


def _parse(parser: argparse.ArgumentParser, arguments: list[str]) -> argparse.Namespace:
    """Parse, allowing ``key=value`` overrides anywhere among the flags (argparse alone takes
    only the first run of positionals, so `sweep a=1 --retries 2 b=2` would lose b=2)."""
    options, extra = parser.parse_known_args(arguments)
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    unknown = [a for a in extra if a not in overrides]
    if unknown or (overrides and not hasattr(options, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
    if overrides:
        options.overrides = [*options.overrides, *overrides]
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``twcore`` command; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in arguments or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        try:
            options = _parse(build_parser(), arguments)
        except SystemExit as exc:  # --help, --version, or a parse error (already printed)
            return exc.code if isinstance(exc.code, int) else 0
        modules = [
            *getattr(options, "plugins_before_command", []),
            *getattr(options, "plugins", []),
        ]
        if modules:
            import_plugins(*modules)
        # SIGTERM stops a command as Ctrl-C does: promptly, cleaning up, exit code 130 (a run's
        # training loop finishes its step and checkpoints first).
        with stop_signals_interrupt():
            return int(options.handler(options) or 0)
    except TwcoreError as exc:
        if debug:
            traceback.print_exc()
        error(one_line(str(exc), debug=debug))
        return exc.exit_code
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        # A bug rather than bad input: its first line here, all of it in the traceback.
        text = f"{type(exc).__name__}: {first_line(exc)}"
        error(text if debug else f"{text} (rerun with --debug for the traceback)")
        return 1


def one_line(message: str, *, debug: bool) -> str:
    """`message` as one line: a library's multi-line text (a checkpoint torch cannot read, a
    solver's report) keeps its first line here; the rest is shown with ``--debug``."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else message
    if debug:
        return " ".join(lines)
    return f"{lines[0]} (more with --debug)"
