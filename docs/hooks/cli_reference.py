"""mkdocs hook: the command-line reference, generated at build time from twcore's argparse
parser (and the run-level options from the run's config schema), so it cannot drift from the
code. The page is ``reference/cli.md``; it exists only in the built site."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PAGE = "reference/cli.md"
USAGE_WIDTH = 78


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, PAGE, content=cli_reference()))
    return files


def cli_reference() -> str:
    """The whole page: the top-level command, one section per subcommand, then the run keys."""
    from twcore.orchestration.cli import main

    parser = main.build_parser()
    subcommands = _subparsers(parser)
    lines = [
        "# Command line",
        "",
        "Generated from the argparse parser (`twcore.orchestration.cli.main.build_parser`) when "
        "the site is built; `twcore COMMAND --help` prints the same. `twcore` and "
        "`python3 -m twcore` are the same program.",
        "",
        _usage(parser),
        "",
        parser.description or "",
        "",
        *_arguments_table(parser, skip_subparsers=True),
        "",
        "| command | what it does |",
        "|---|---|",
        *(
            f"| [`{name}`](#twcore-{name}) | {_cell(help_text)} |"
            for name, help_text, _ in subcommands
        ),
        "",
        *_exit_codes(main.__doc__ or ""),
    ]
    for name, _, subparser in subcommands:
        lines += [
            "",
            f"## twcore {name}",
            "",
            subparser.description or "",
            "",
            _usage(subparser),
            "",
            *_arguments_table(subparser, skip_subparsers=False),
        ]
    lines += ["", *_run_keys()]
    return "\n".join(lines) + "\n"


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of every subcommand, in the parser's order."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, subparser in action.choices.items():
                found.append((name, helps.get(name, ""), subparser))
    return found


def _usage(parser: argparse.ArgumentParser) -> str:
    # A fixed width, so the page does not depend on the terminal that builds it.
    formatter = argparse.HelpFormatter(parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return f"```text\n{formatter.format_help().strip()}\n```"


def _arguments_table(parser: argparse.ArgumentParser, *, skip_subparsers: bool) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and skip_subparsers:
            continue
        if action.help == argparse.SUPPRESS:
            continue
        rows.append(f"| {_cell(_flags(action))} | {_cell(_help(action))} |")
    if not rows:
        return []
    return ["| argument | meaning |", "|---|---|", *rows]


def _flags(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(f"`{flag}`" for flag in action.option_strings)
        if action.nargs != 0:
            names += f" `{action.metavar or action.dest.upper()}`"
        return names
    metavar = action.metavar or action.dest
    return f"`{metavar} ...`" if action.nargs in ("*", "+") else f"`{metavar}`"


def _help(action: argparse.Action) -> str:
    text = action.help or ""
    if isinstance(action, argparse._HelpAction):
        text = "show the help and exit"
    elif isinstance(action, argparse._VersionAction):
        text = "show the version and exit"
    elif action.nargs == "*" and not action.option_strings:
        text = text or "optional, any number"
    elif action.nargs == "+" and not action.option_strings:
        text = text or "one or more"
    default = action.default
    if (
        action.option_strings
        and action.nargs != 0
        and default not in (None, argparse.SUPPRESS, [])
        and "default" not in text
    ):
        text += f" (default `{default}`)"
    return text


def _exit_codes(docstring: str) -> list[str]:
    """The exit codes the CLI module documents, as a paragraph (empty if it documents none)."""
    paragraphs = [" ".join(p.split()) for p in docstring.split("\n\n")]
    return [p for p in paragraphs if p.startswith("Exit codes")][:1]


def _run_keys() -> list[str]:
    """The run-level ``key=value`` settings, from the run's config schema."""
    from twcore.orchestration.config.describe import describe_config
    from twcore.orchestration.config.schema import RunConfig

    lines = [
        "## Run options (`key=value`)",
        "",
        "Every command that trains takes `key=value` settings. These are the run-level keys "
        "(`twcore show` prints them with this installation's default plugins); each plugin's "
        "own keys live under `method.*`, `task.*` and `model.*` (`twcore show method=NAME`).",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for key in describe_config(RunConfig):
        default = _default(key.default)
        lines.append(f"| `{key.key}` | {_cell(str(key.type))} | {default} | {_cell(key.help)} |")
    return lines


def _default(value: Any) -> str:
    if value is None:
        return "—"
    if dataclasses.is_dataclass(value):
        return "—"
    return f"`{value!r}`" if isinstance(value, str) else f"`{value}`"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")
