"""The predetermined distributions a threshold is fitted from, and their parameters.

The compiled core implements the fits; this registry is what both frontends validate against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FamilySpec:
    """One family: its name and the keyword parameters it takes.

    What each family fits (claim 7) and how the ratio becomes a threshold (claim 8) is the compiled
    core's (``csrc/core/fit.h``); the README's table states it in words.

    Attributes:
        name: the ``distribution=`` value.
        parameters: keyword parameters the family accepts.
    """

    name: str
    parameters: tuple[str, ...] = ()


FAMILIES: dict[str, FamilySpec] = {
    spec.name: spec
    for spec in (
        FamilySpec("normal"),
        FamilySpec("laplace"),
        FamilySpec("cauchy"),
        FamilySpec("student_t", ("dof",)),
        FamilySpec("exponential"),
        FamilySpec("gamma"),
        FamilySpec("gpareto"),
        FamilySpec("auto"),
    )
}

# Entries of the strided sample medians and quartiles are estimated from (laplace, cauchy).
DEFAULT_SAMPLE_SIZE = 4096
AUTO_STAGES = 3
# Each stage re-reads the entries still selected: more than this costs time and gains nothing.
MAX_STAGES = 16


def family_arguments(distribution: str, **params: Any) -> dict[str, float]:
    """Validates a family name and its parameters and returns the core's arguments.

    Args:
        distribution: a key of :data:`FAMILIES`.
        **params: the family's keyword parameters; ``student_t`` takes ``dof`` (a number > 2, or
            None to estimate it from the kurtosis of each tensor).

    Returns:
        ``{"dof": float}``, the arguments the compiled kernel takes (0 means "estimate").

    Raises:
        ValueError: unknown family or invalid parameter value.
        TypeError: a parameter the family does not take.

    Example:
        >>> family_arguments("student_t", dof=5)
        {'dof': 5.0}
    """
    spec = FAMILIES.get(distribution)
    if spec is None:
        raise ValueError(f"unknown distribution {distribution!r}; expected one of: {', '.join(FAMILIES)}")
    unexpected = sorted(set(params) - set(spec.parameters))
    if unexpected:
        accepted = ", ".join(spec.parameters) or "no parameters"
        raise TypeError(f"distribution {distribution!r} takes {accepted}; got {', '.join(unexpected)}")
    dof = params.get("dof")
    if dof is None:
        return {"dof": 0.0}
    if isinstance(dof, bool) or not isinstance(dof, (int, float)) or not math.isfinite(dof) or dof <= 2:
        raise ValueError(f"student_t dof must be a finite number > 2 (finite variance) or None, got {dof!r}")
    return {"dof": float(dof)}


def default_stages(distribution: str) -> int:
    """Stages used when none are given: 3 for ``auto`` (its tail family fits the later stages), else 1."""
    return AUTO_STAGES if distribution == "auto" else 1


def sparsify_arguments(distribution: str, ratio: Any, stages: int | None, **family_params: Any) -> tuple[float, int]:
    """Validates the arguments both frontends' ``sparsify`` take, before any kernel runs.

    Args:
        distribution: a key of :data:`FAMILIES`.
        ratio: the target ratio; checked when it is a Python number (a tensor is left to the kernel).
        stages: peaks-over-threshold stages, or None for the family's default.
        **family_params: the family's keyword parameters.

    Returns:
        ``(dof, stages)`` as the compiled kernel takes them.

    Raises:
        ValueError: unknown family, or an invalid ratio, stage count or parameter.
        TypeError: a parameter the family does not take.

    Example:
        >>> sparsify_arguments("auto", 0.01, None)
        (0.0, 3)
    """
    arguments = family_arguments(distribution, **family_params)
    if isinstance(ratio, (int, float)) and not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    if stages is None:
        stages = default_stages(distribution)
    if isinstance(stages, bool) or not isinstance(stages, int) or not 1 <= stages <= MAX_STAGES:
        raise ValueError(f"stages must be an integer in [1, {MAX_STAGES}], got {stages!r}")
    return arguments["dof"], stages
