"""The plugin author's test kit: conformance suites, reference plugins and an in-memory harness.

See :mod:`twcore.testing.conformance` for how to use the suites in your own tests.
"""

from twcore.testing.conformance import MethodConformance, ModelConformance, TaskConformance
from twcore.testing.harness import Harness, PluginEntry, plugin_harness, registry_with
from twcore.testing.reference import ReferenceMethod, ReferenceModel, ReferenceTask

__all__ = [
    "Harness",
    "MethodConformance",
    "ModelConformance",
    "PluginEntry",
    "ReferenceMethod",
    "ReferenceModel",
    "ReferenceTask",
    "TaskConformance",
    "plugin_harness",
    "registry_with",
]
