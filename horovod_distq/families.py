"""The predetermined distributions a threshold is fitted from, and their parameters.

The compiled core implements the fits; this registry is what both frontends validate against
and what the docs list. Each entry says which constants are fitted (claim 7) and how the ratio
becomes a threshold (claim 8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FamilySpec:
    """One family: how it is fitted and which keyword parameters it takes.

    Attributes:
        name: the ``distribution=`` value.
        on_magnitudes: True when the family models ``|x|`` (selection ``|x| >= t``), False when it
            is symmetric about a fitted centre ``c`` (selection ``|x - c| >= t``).
        constants: the fitted constants, in words.
        threshold: the threshold formula, delta being the ratio.
        parameters: keyword parameters the family accepts.
    """

    name: str
    on_magnitudes: bool
    constants: str
    threshold: str
    parameters: tuple[str, ...] = ()


FAMILIES: dict[str, FamilySpec] = {
    spec.name: spec
    for spec in (
        FamilySpec("normal", False, "c = mean, sigma = std", "sigma * Phi^-1(1 - delta/2)"),
        FamilySpec(
            "laplace", False, "c = median (sample), b = mean |x - c|", "b * ln(1/delta)"
        ),
        FamilySpec(
            "cauchy", False, "c = median (sample), gamma = half the interquartile range (sample)",
            "gamma * tan(pi/2 * (1 - delta))",
        ),
        FamilySpec(
            "student_t", False,
            "c = mean, nu = dof or 4 + 6/excess kurtosis, s = std * sqrt((nu - 2)/nu)",
            "s * t_nu^-1(1 - delta/2)", ("dof",),
        ),
        FamilySpec("exponential", True, "mu = mean |x|", "mu * ln(1/delta)"),
        FamilySpec(
            "gamma", True,
            "over the nonzero |x|: s = ln(mean) - mean(ln), shape a = (3 - s + sqrt((s-3)^2 + 24 s)) / (12 s), "
            "scale = mean / a",
            "scale * P^-1(a, 1 - delta'), delta' = delta * finite / nonzero",
        ),
        FamilySpec(
            "gpareto", True,
            "moments of |x|: r = mean^2 / var, xi = (1 - r) / 2, sigma = mean (r + 1) / 2",
            "sigma * (delta^-xi - 1) / xi (xi -> 0: the exponential's)",
        ),
        FamilySpec(
            "auto", False,
            "Student-t with nu from the kurtosis (stage 1), generalized Pareto fitted to the excesses (later stages)",
            "the Student-t's at stage 1, raised by the generalized Pareto's quantile at each later stage",
        ),
    )
}


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


AUTO_STAGES = 3


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
    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 1:
        raise ValueError(f"stages must be a positive integer, got {stages!r}")
    return arguments["dof"], stages
