"""Checking that a method can run on a task, before anything is trained."""

from __future__ import annotations

from twcore.contract.errors import IncompatiblePairingError
from twcore.contract.spec import Capability, Requirements, TaskSpec

MAIN_AND_AUXILIARY = "a main objective and at least one auxiliary objective"
"""The ``main_auxiliary`` requirement in words (one phrase for errors and ``twcore show``)."""

_CAPABILITY_WORDS: dict[str, str] = {
    Capability.VALIDATION: "a validation split",
    Capability.DECISION: "a decision layer",
    Capability.DECISION_SOLVER: "a decision layer with an exact solver (solve, true_values)",
    Capability.LINEAR_DECISION: "a decision objective linear in the true values (yᵀz)",
    Capability.AFFINE_DECISION: "a decision objective yᵀz − r(z) with r independent of the "
    "true values",
    Capability.ENVIRONMENT: "an environment",
}


def missing(requirements: Requirements, spec: TaskSpec) -> list[str]:
    """What `spec` lacks of `requirements`, in words; empty if the task qualifies."""
    gaps: list[str] = []
    if spec.num_objectives < requirements.min_objectives:
        gaps.append(
            f"at least {requirements.min_objectives} objectives (it has {spec.num_objectives})"
        )
    if requirements.main_auxiliary and (
        spec.main_objective is None or not spec.auxiliary_objectives
    ):
        roles = ", ".join(f"{o.name}={o.role}" for o in spec.objectives)
        gaps.append(f"{MAIN_AND_AUXILIARY} (it has {roles})")
    for capability in sorted(requirements.capabilities - spec.capabilities):
        gaps.append(_CAPABILITY_WORDS.get(capability, str(capability)))
    if requirements.objective_kinds is not None:
        wrong = [o for o in spec.objectives if o.kind not in requirements.objective_kinds]
        if wrong:
            kinds = " or ".join(sorted(requirements.objective_kinds))
            gaps.append(
                f"{kinds} objectives (not {', '.join(f'{o.name}: {o.kind}' for o in wrong)})"
            )
    return gaps


def describe_requirements(requirements: Requirements | tuple[Requirements, ...]) -> str:
    """What a method needs of a task, in words (``twcore show method=NAME``); alternatives are
    joined with "or"."""
    options = requirements if isinstance(requirements, tuple) else (requirements,)
    return " — or — ".join(_describe_one(option) for option in options)


def _describe_one(requirements: Requirements) -> str:
    needs = []
    if requirements.min_objectives > 1:
        needs.append(f"at least {requirements.min_objectives} objectives")
    if requirements.main_auxiliary:
        needs.append(MAIN_AND_AUXILIARY)
    needs.extend(
        _CAPABILITY_WORDS.get(c, f"the '{c}' capability") for c in sorted(requirements.capabilities)
    )
    if requirements.objective_kinds is not None:
        needs.append(f"{' or '.join(sorted(requirements.objective_kinds))} objectives only")
    return ", ".join(needs) if needs else "any task"


def check_compatible(
    method_name: str,
    requirements: Requirements | tuple[Requirements, ...],
    task_name: str,
    spec: TaskSpec,
) -> None:
    """Raise IncompatiblePairingError saying what is missing unless the task meets one of the
    method's requirement sets."""
    options = requirements if isinstance(requirements, tuple) else (requirements,)
    gaps = [missing(option, spec) for option in options]
    if any(not gap for gap in gaps):
        return
    described = [" and ".join(gap) for gap in gaps]
    needs = described[0] if len(described) == 1 else "one of: " + "; or ".join(described)
    raise IncompatiblePairingError(
        f"method '{method_name}' cannot run on task '{task_name}': it needs {needs}"
    )
