"""Reading YAML the way YAML 1.2 does: only ``true``/``false`` are booleans.

PyYAML follows YAML 1.1, where ``off``, ``on``, ``yes``, ``no``, ``y`` and ``n`` are booleans
too, so ``wandb.console=off`` (or ``console: off`` in a config file) would arrive as ``False``
and be refused by the option it names. Config files and command-line values are read with this
loader instead; everything else about PyYAML's safe loading is unchanged.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

BOOL_TAG = "tag:yaml.org,2002:bool"


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    """`text` parsed as YAML (safe; only ``true``/``false`` are booleans): what
    ``yaml.safe_load`` does, with the loader above — a SafeLoader, which builds no objects."""
    loader = Yaml12Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
