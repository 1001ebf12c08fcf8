"""The commands that list and describe plugins: ``twcore plugins`` and ``twcore show``.

They import no plugin class (and so neither torch nor anything else a plugin needs) unless they
describe one: ``twcore plugins --check`` and ``twcore show method=NAME`` import the classes they
name; ``twcore plugins`` and ``twcore show`` alone read only the registrations.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import TYPE_CHECKING, Any

from twcore.contract.errors import BrokenPluginError, ConfigError
from twcore.orchestration.config.describe import KeyDescription, describe_config, format_keys
from twcore.orchestration.config.overrides import parse_override
from twcore.orchestration.config.schema import PLUGIN_SECTIONS, RunConfig
from twcore.orchestration.console import warn
from twcore.orchestration.registry import KINDS, PluginRegistry, get_registry

if TYPE_CHECKING:
    from twcore.contract.method import Method


def plugins(options: argparse.Namespace) -> int:
    """``twcore plugins [--json] [--check]``: exit code 1 with ``--check`` when a plugin fails."""
    rows = plugin_rows(get_registry(), check=options.check)
    failed = options.check and any(row["status"] == "failed" for row in rows)
    if options.json:
        print(json.dumps(rows, indent=2))
        return 1 if failed else 0
    columns = ("name", "kind", "distribution", "version", "status", "default")
    shown = [{**row, "default": "yes" if row["default"] else ""} for row in rows]
    table = [columns] + [
        tuple(str(row[c] or ("" if c == "default" else "-")) for c in columns) for row in shown
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    for row_values, row in zip(table, [None, *rows], strict=True):
        print("  ".join(v.ljust(widths[i]) for i, v in enumerate(row_values)).rstrip())
        if row and row.get("error"):
            print(f"    error: {row['error']}")
    return 1 if failed else 0


def plugin_rows(registry: PluginRegistry, *, check: bool = False) -> list[dict[str, Any]]:
    """One row per registered name (duplicates marked; ``default`` says the plugin offers to be
    its kind's default; ``class`` where its class is, as ``module:Class``) and per plugin that
    failed to load. `check`: import every class registered by import path, marking the ones
    that fail ``failed`` with the reason (without it, such a class is imported on first use)."""
    rows: list[dict[str, Any]] = []
    for registration in registry.registrations():
        ambiguous = registry.is_ambiguous(registration.kind, registration.name)
        status = "duplicate" if ambiguous else "loaded"
        error = registry.ambiguity(registration.kind, registration.name) if ambiguous else None
        if check and not ambiguous:
            try:
                registration.cls  # noqa: B018 - imports and checks it
            except BrokenPluginError as exc:
                status, error = "failed", str(exc)
        rows.append(
            {
                "name": registration.name,
                "kind": registration.kind,
                "distribution": registration.source.distribution,
                "version": registration.source.version,
                "status": status,
                "default": registration.default,
                "error": error,
                "entry_point": registration.source.name,
                "class": registration.class_path,
            }
        )
    for failure in registry.failures:
        rows.append(
            {
                "name": failure.source.name,
                "kind": "plugin",
                "distribution": failure.source.distribution,
                "version": failure.source.version,
                "status": "failed",
                "default": False,
                "error": failure.error,
                "entry_point": failure.source.name,
                "class": None,
            }
        )
    return rows


def show(options: argparse.Namespace) -> int:
    """``twcore show [method=NAME] [task=NAME] [model=NAME]``"""
    registry = get_registry()
    if not options.selection:
        print("run options (set as key=value; plugin options under method.*, task.*, model.*):")
        print(format_keys(_with_installed_defaults(describe_config(RunConfig), registry)))
        return 0
    for index, argument in enumerate(options.selection):
        override = parse_override(argument)
        if override.key not in PLUGIN_SECTIONS:
            raise ConfigError(
                f"cannot show '{override.key}'; write one of "
                f"{', '.join(f'{k}=NAME' for k in KINDS)}"
            )
        registration = registry.get(override.key, override.text)
        if index:
            print()
        doc = (registration.cls.__doc__ or "").strip().split("\n\n")[0].split()
        source = registration.source
        origin = (
            f"from {source.distribution} {source.version or ''}".rstrip()
            if source.distribution
            else f"registered in this process by {source.name}"
        )
        print(f"{registration.kind} '{registration.name}' {origin}")
        if doc:
            print(f"  {' '.join(doc)}")
        if registration.kind == "method":
            from twcore.contract.pairing import describe_requirements
            from twcore.contract.spec import Requirements

            needs = describe_requirements(getattr(registration.cls, "requirements", Requirements()))
            print(f"  needs: {needs}")
            print(f"  {_scaling(registration.cls)}")
        suggested = getattr(registration.cls, "run_defaults", {})
        if suggested:
            settings = ", ".join(f"{key}={value}" for key, value in suggested.items())
            print(f"  run defaults it suggests (key=value still wins): {settings}")
        keys = describe_config(registration.config_class, prefix=f"{registration.kind}.")
        print(format_keys(keys) if keys else "  (no options)")
    return 0


def _scaling(method: type[Method]) -> str:
    """Whether a method class runs data-parallel, accumulates micro-batches and takes float16's
    loss scale (a weighting method's answers depend on its rule, known once built)."""
    from twcore.contract.weighting_method import accumulates, scales_losses

    parallel = "yes" if getattr(method, "data_parallel", True) else "no (refused with nproc > 1)"
    answers = {True: "yes", False: "no", None: "depends on its rule"}
    return (
        f"data-parallel (nproc > 1): {parallel}; accumulate > 1: {answers[accumulates(method)]}; "
        f"precision=16-mixed: {answers[scales_losses(method)]}"
    )


def _with_installed_defaults(
    keys: list[KeyDescription], registry: PluginRegistry
) -> list[KeyDescription]:
    """The run-level keys, with the plugin each section defaults to on this installation."""
    shown = []
    for key in keys:
        if key.key in PLUGIN_SECTIONS:
            try:
                key = dataclasses.replace(key, default=registry.default_name(key.key))
            except ConfigError:
                key = dataclasses.replace(key, default="(none: name one)")
        shown.append(key)
    return shown


def warn_failed_plugins(registry: PluginRegistry) -> None:
    """One warning per plugin that failed to load (the others keep working)."""
    for failure in registry.failures:
        warn(f"plugin {failure.source.describe()} failed to load and is skipped: {failure.error}")
