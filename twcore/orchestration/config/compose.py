"""Composing a run's configuration: schema defaults < base < YAML file < key=value overrides.

The schema is :class:`~twcore.orchestration.config.schema.RunConfig` plus one typed section per
plugin (``method``, ``task``, ``model``), each holding ``name`` and the plugin's ``Config``
dataclass. Every mistake becomes a one-line :class:`~twcore.contract.errors.ConfigError` with the
full key path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from twcore.contract.errors import ConfigError, did_you_mean, first_line
from twcore.contract.options import check_option_values
from twcore.orchestration.config.overrides import Override, parse_override, reject_unintended_sweep
from twcore.orchestration.config.schema import PLUGIN_SECTIONS, RunConfig
from twcore.orchestration.config.validate import validate_run_config
from twcore.orchestration.config.yaml_text import load_yaml
from twcore.orchestration.plugin_modules import add_search_paths, module_roots, named_modules
from twcore.orchestration.registry import PluginRegistry, Registration, get_registry
from twcore.orchestration.user_plugins import import_plugins


@dataclass
class ComposedConfig:
    """A validated run configuration.

    Attributes:
        tree: the resolved configuration as an OmegaConf tree (plugin sections hold ``name``).
        run: the run-level settings; ``run.method`` etc. are the plugin names.
        plugins: the registration of each plugin section, by section (``method``...).
        sections: each plugin's config dataclass instance, by section.
        overrides: the overrides it was composed from, as given (provenance).
        config_file: the config file it was composed from, if any (provenance).
    """

    tree: DictConfig
    run: RunConfig
    plugins: dict[str, Registration]
    sections: dict[str, Any]
    overrides: list[str] = field(default_factory=list)
    config_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict, plugin sections first with ``name`` leading (config.yaml, W&B)."""
        container = OmegaConf.to_container(self.tree, resolve=True)
        assert isinstance(container, dict)
        ordered: dict[str, Any] = {}
        for section in PLUGIN_SECTIONS:
            body = dict(container.pop(section))
            ordered[section] = {"name": body.pop("name"), **body}
        ordered.update(container)
        return ordered

    def to_yaml(self) -> str:
        """The resolved configuration as YAML."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def reusable_yaml(self) -> str:
        """A run directory's ``config.yaml``: the resolved configuration with ``run_dir`` null,
        so the file starts a new run as it is (``twcore run --config``); the run's directory is
        the one holding the file (``summary.json`` records its path)."""
        config = self.to_dict()
        config["run_dir"] = None
        return yaml.safe_dump(config, sort_keys=False)


def compose(
    overrides: Sequence[str | Override] = (),
    *,
    config_file: str | Path | None = None,
    base: Mapping[str, Any] | None = None,
    registry: PluginRegistry | None = None,
) -> ComposedConfig:
    """Build and validate a run configuration.

    Args:
        overrides: ``key=value`` strings (``method=NAME`` picks a plugin, ``method.KEY=VALUE``
            sets its options).
        config_file: optional YAML file with the same structure as ``config.yaml``.
        base: optional starting values below the file (e.g. a resumed run's config).
        registry: where plugin names are looked up (default: the installed plugins).
    """
    registry = registry or get_registry()
    parsed = [o if isinstance(o, Override) else parse_override(o) for o in overrides]
    for override in parsed:
        reject_unintended_sweep(override)
    sources: list[tuple[str, dict[str, Any]]] = []
    if base:
        sources.append((BASE, dict(base)))
    if config_file is not None:
        sources.append((f"config file {config_file}", load_yaml_file(config_file)))
    # Modules named by the user (a config file, an override) are imported; a base configuration
    # (a run directory's config.yaml) is data and never makes this process import code.
    _import_plugin_modules([s for s in sources if s[0] != BASE], parsed)
    names = _plugin_names(sources, parsed, registry)
    plugins = {section: registry.get(section, name) for section, name in names.items()}

    tree = _schema(plugins)
    for section, registration in plugins.items():
        # A plugin's suggested run settings (e.g. fewer, costlier steps) sit above the run's
        # defaults and below everything the user gives.
        for key, value in getattr(registration.cls, "run_defaults", {}).items():
            origin = f"run_defaults of {section} '{registration.name}'"
            tree = _merge(tree, _nest(key, value), origin)
    for origin, values in sources:
        tree = _merge(tree, _without_names(values), origin)
    for override in parsed:
        if override.plugin_section is not None:
            continue
        tree = _merge(
            tree, _nest(override.key, override.value), f"override {override}", override=override
        )

    # Record every plugin module this process named, and where it was found, so that a resume
    # that cannot find a plugin can say which module to name (they are never imported from here).
    tree.imported_plugin_modules = _union(tree.imported_plugin_modules, named_modules())
    tree.imported_plugin_paths = _union(tree.imported_plugin_paths, module_roots())
    sections = {section: _section_object(tree, section, plugins[section]) for section in names}
    run = _run_object(tree, names)
    validate_run_config(run)
    return ComposedConfig(
        tree=tree,
        run=run,
        plugins=plugins,
        sections=sections,
        overrides=[str(o) for o in parsed],
        config_file=str(Path(config_file).absolute()) if config_file is not None else None,
    )


def _union(recorded: Sequence[str], found: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*recorded, *found]))


BASE = "base configuration"
"""The origin of a resumed run's recorded configuration in error messages."""


def _import_plugin_modules(
    sources: Sequence[tuple[str, Mapping[str, Any]]], overrides: Sequence[Override]
) -> None:
    """Import the ``plugin_modules`` the configuration names before plugins are looked up."""
    modules, paths = [], []
    for key, found in (("plugin_paths", paths), ("plugin_modules", modules)):
        given: list[Any] = [values.get(key) or [] for _, values in sources]
        given += [o.value for o in overrides if o.key == key]
        for value in given:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
                raise ConfigError(f"{key}={value!r}: give a list of names")
            found.extend(value)
    add_search_paths(paths)
    missing = [m for m in dict.fromkeys(modules) if m not in named_modules()]
    if missing:
        import_plugins(*missing)


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from `path`, or ConfigError saying what is wrong with the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        values = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {first_line(exc)}") from exc
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of keys, not {type(values).__name__}"
        )
    return values


def _plugin_names(
    sources: list[tuple[str, dict[str, Any]]],
    overrides: list[Override],
    registry: PluginRegistry,
) -> dict[str, str]:
    """The plugin of each section: the last source or override naming one, else the installed
    default of that kind (:meth:`PluginRegistry.default_name`)."""
    names: dict[str, str | None] = dict.fromkeys(PLUGIN_SECTIONS)
    for origin, values in sources:
        for section in PLUGIN_SECTIONS:
            value = values.get(section)
            if isinstance(value, Mapping) and "name" in value:
                value = value["name"]
            if isinstance(value, str):
                names[section] = value
            elif value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"{section} in {origin} must be a plugin name or a mapping")
    for override in overrides:
        section = override.plugin_section
        if section is not None:
            if not isinstance(override.value, str) or not override.value:
                raise ConfigError(f"{override}: {section} must be a plugin name")
            names[section] = override.value
    return {
        section: name if name is not None else registry.default_name(section)
        for section, name in names.items()
    }


def _schema(plugins: Mapping[str, Registration]) -> DictConfig:
    tree = OmegaConf.structured(RunConfig)
    for section, registration in plugins.items():
        body = OmegaConf.structured(registration.config_class)
        with open_dict(body):
            body.name = registration.name
        tree[section] = body
    return tree


def _without_names(values: Mapping[str, Any]) -> dict[str, Any]:
    cleaned = dict(values)
    for section in PLUGIN_SECTIONS:
        value = cleaned.get(section)
        if isinstance(value, Mapping):
            cleaned[section] = {k: v for k, v in value.items() if k != "name"}
        elif value is not None:
            cleaned.pop(section)
    return cleaned


def _nest(key: str, value: Any) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    node = nested
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def _merge(
    tree: DictConfig, values: Mapping[str, Any], origin: str, override: Override | None = None
) -> DictConfig:
    try:
        merged = OmegaConf.merge(tree, values)
    except ConfigKeyError as exc:
        raise ConfigError(_unknown_key_message(tree, exc, origin)) from exc
    except ValidationError as exc:
        group = OmegaConf.select(tree, override.key) if override is not None else None
        if isinstance(group, DictConfig):
            raise ConfigError(_group_message(override.key, override.value, group)) from exc
        raise ConfigError(_wrong_type_message(exc, origin)) from exc
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{origin}: {first_line(exc)}") from exc
    assert isinstance(merged, DictConfig)
    return merged


def _unknown_key_message(tree: DictConfig, exc: ConfigKeyError, origin: str) -> str:
    full_key = str(exc.full_key or exc.key)
    parent_path, _, leaf = full_key.rpartition(".")
    parent = OmegaConf.select(tree, parent_path) if parent_path else tree
    valid = sorted(str(k) for k in parent) if isinstance(parent, DictConfig) else []
    where = f"{parent_path}." if parent_path else ""
    suggestion = did_you_mean(leaf, valid, prefix=where)
    return (
        f"unknown config key '{full_key}'{suggestion} in {origin}; valid keys"
        f"{' under ' + parent_path if parent_path else ''}: {', '.join(valid)}"
    )


def _wrong_type_message(exc: ValidationError, origin: str) -> str:
    full_key = str(exc.full_key or exc.key)
    expected = _expected_type(exc)
    value = getattr(exc, "value", None)
    shown = repr(value) if value is not None else _quoted_value(exc)
    hint = ""
    if expected.startswith(("list[", "List[", "tuple[")) and not str(shown).startswith("["):
        hint = f"; a list is written in brackets: {full_key}=[{str(shown).strip(chr(39))}]"
    return f"{full_key}={shown} is not a valid {expected} (in {origin}){hint}"


def _group_message(key: str, value: Any, group: DictConfig) -> str:
    keys = sorted(str(k) for k in group)
    return (
        f"{key}={value!r}: '{key}' is a group of keys, not a value; set them one by one "
        f"(e.g. {key}.{keys[0]}=...); keys: {', '.join(keys)}"
    )


_OMEGACONF_TYPE_WORDS = {"Integer": "int", "Float": "float", "Boolean": "bool", "String": "str"}


def _expected_type(exc: ValidationError) -> str:
    owner = exc.object_type
    if owner is not None and dataclasses.is_dataclass(owner):
        for field in dataclasses.fields(owner):
            if field.name == exc.key:
                return str(field.type) if isinstance(field.type, str) else field.type.__name__
    for word, name in _OMEGACONF_TYPE_WORDS.items():
        if f"converted to {word}" in str(exc):
            return name  # an element of a typed list or dict
    return "value"


def _quoted_value(exc: Exception) -> str:
    message = str(exc)
    if message.startswith("Value '"):
        return repr(message.split("'")[1])
    return "<value>"


def _section_object(tree: DictConfig, section: str, registration: Registration) -> Any:
    body = OmegaConf.to_container(tree[section], resolve=True)
    assert isinstance(body, dict)
    body.pop("name", None)
    # Each field's own constraint first, so that __post_init__'s cross-field checks only ever
    # see values their fields accept.
    check_option_values(registration.config_class, body, f"{section}.")
    try:
        return OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(registration.config_class), body)
        )
    except (ValueError, TypeError, OmegaConfBaseException) as exc:
        raise ConfigError(
            f"{section} '{registration.name}' options are invalid: {first_line(exc)}"
        ) from exc


def _run_object(tree: DictConfig, names: Mapping[str, str]) -> RunConfig:
    run_tree = tree.copy()
    for section, name in names.items():
        run_tree[section] = name
    values = OmegaConf.to_container(run_tree, resolve=True)
    assert isinstance(values, dict)
    check_option_values(RunConfig, values)
    try:
        run = OmegaConf.to_object(run_tree)
    except (ValueError, TypeError, OmegaConfBaseException) as exc:
        raise ConfigError(f"run options are invalid: {first_line(exc)}") from exc
    assert isinstance(run, RunConfig)
    return run
