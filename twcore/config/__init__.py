"""Typed configuration: dataclass schemas merged with YAML files and key=value overrides."""

from twcore.config.fields import NoConfig, option

__all__ = ["NoConfig", "option"]
