"""The plugin author's test kit: conformance suites, the weighting property suite, reference
plugins and an in-memory harness.

See :mod:`twcore.testing.conformance` for how to use the suites in your own tests.
"""

from twcore.testing.conformance import MethodConformance, ModelConformance, TaskConformance
from twcore.testing.decision import DecisionLayerConformance
from twcore.testing.harness import Harness, PluginEntry, plugin_harness, registry_with
from twcore.testing.reference import ReferenceMethod, ReferenceModel, ReferenceTask
from twcore.testing.weighting import WeightingProperties

__all__ = [
    "DecisionLayerConformance",
    "Harness",
    "MethodConformance",
    "ModelConformance",
    "PluginEntry",
    "ReferenceMethod",
    "ReferenceModel",
    "ReferenceTask",
    "TaskConformance",
    "WeightingProperties",
    "plugin_harness",
    "registry_with",
]
