"""Method requirements against task specs, checked before anything trains."""

from __future__ import annotations

import pytest

import twcore
from twcore.contract.errors import IncompatiblePairingError
from twcore.contract.hookspecs import hookimpl
from twcore.contract.pairing import check_compatible, missing
from twcore.contract.spec import (
    Capability,
    HeadSpec,
    ObjectiveKind,
    ObjectiveSpec,
    Requirements,
    Role,
    TaskSpec,
)
from twcore.orchestration.registry import PluginRegistry, PluginSource
from twcore.testing.reference import ReferenceMethod


def _spec(*objectives: ObjectiveSpec, capabilities=()) -> TaskSpec:
    heads = tuple(HeadSpec(o.head, 2) for o in objectives)
    return TaskSpec((3,), heads, objectives, frozenset(capabilities))


SINGLE = _spec(ObjectiveSpec("label", "label"))
MAIN_AUX = _spec(
    ObjectiveSpec("a", "a", role=Role.MAIN),
    ObjectiveSpec("b", "b", role=Role.AUXILIARY),
    capabilities={Capability.VALIDATION},
)


def test_a_task_that_meets_every_requirement_passes():
    requirements = Requirements(
        min_objectives=2, main_auxiliary=True, capabilities=frozenset({Capability.VALIDATION})
    )
    assert missing(requirements, MAIN_AUX) == []
    check_compatible("m", requirements, "t", MAIN_AUX)


@pytest.mark.parametrize(
    ("requirements", "words"),
    [
        (Requirements(min_objectives=2), "at least 2 objectives (it has 1)"),
        (
            Requirements(main_auxiliary=True),
            "a main objective and at least one auxiliary objective (it has label=peer)",
        ),
        (Requirements(capabilities=frozenset({Capability.DECISION})), "a decision layer"),
        (Requirements(capabilities=frozenset({Capability.VALIDATION})), "a validation split"),
        (Requirements(capabilities=frozenset({Capability.ENVIRONMENT})), "an environment"),
        (
            Requirements(objective_kinds=frozenset({ObjectiveKind.REGRESSION})),
            "regression objectives (not label: classification)",
        ),
    ],
)
def test_each_missing_requirement_is_named(requirements, words):
    with pytest.raises(IncompatiblePairingError) as caught:
        check_compatible("meth", requirements, "single", SINGLE)
    assert str(caught.value) == f"method 'meth' cannot run on task 'single': it needs {words}"


def test_alternative_requirements_need_only_one_to_hold():
    alternatives = (
        Requirements(capabilities=frozenset({Capability.DECISION})),
        Requirements(main_auxiliary=True, capabilities=frozenset({Capability.VALIDATION})),
    )
    check_compatible("taskmet", alternatives, "aux", MAIN_AUX)
    with pytest.raises(
        IncompatiblePairingError, match=r"needs one of: a decision layer; or a main"
    ):
        check_compatible("taskmet", alternatives, "single", SINGLE)


class _NeedsDecisions(ReferenceMethod):
    requirements = Requirements(capabilities=frozenset({Capability.DECISION}))


class _Plugin:
    @staticmethod
    @hookimpl
    def twcore_register_methods(register):
        register("needs-decisions", _NeedsDecisions)


def test_an_incompatible_pairing_fails_before_training_and_writes_nothing(tmp_path):
    registry = PluginRegistry()
    registry.add_plugin(_Plugin(), PluginSource("needs-decisions"))
    with pytest.raises(
        IncompatiblePairingError,
        match="method 'needs-decisions' cannot run on task 'toy-multitask': "
        "it needs a decision layer",
    ):
        twcore.run(["method=needs-decisions", f"run_dir={tmp_path / 'run'}"], registry=registry)
    assert not (tmp_path / "run").exists()


def test_spec_rejects_inconsistent_declarations():
    with pytest.raises(ValueError, match="uses head 'z'"):
        TaskSpec((1,), (HeadSpec("a", 1),), (ObjectiveSpec("a", "z"),))
    with pytest.raises(ValueError, match="at most one main"):
        TaskSpec(
            (1,),
            (HeadSpec("a", 1),),
            (ObjectiveSpec("a", "a", role=Role.MAIN), ObjectiveSpec("b", "a", role=Role.MAIN)),
        )
    with pytest.raises(ValueError, match="duplicate objective"):
        TaskSpec((1,), (HeadSpec("a", 1),), (ObjectiveSpec("a", "a"), ObjectiveSpec("a", "a")))


def test_plugins_can_declare_and_require_capabilities_twcore_does_not_know():
    spec = _spec(ObjectiveSpec("a", "a"), capabilities={"task_loss"})
    assert spec.has("task_loss")
    check_compatible("m", Requirements(capabilities=frozenset({"task_loss"})), "t", spec)
    with pytest.raises(IncompatiblePairingError, match="it needs simulator"):
        check_compatible("m", Requirements(capabilities=frozenset({"simulator"})), "t", spec)
