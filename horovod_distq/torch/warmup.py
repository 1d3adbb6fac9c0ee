"""The sparsity warm-up's step counts, per gradient, for torch (the schedule: ``horovod_distq.warmup``)."""

from __future__ import annotations

from typing import Any

from horovod_distq.state import checked_warmup_steps


class WarmupCounter:
    """Per gradient name, how many steps it has taken, and the warm-up's factor on its ratio.

    Args:
        factors: the factor at each step, the last one for every later step
            (``DistQConfig.warmup_factors``).

    Example:
        >>> counter = WarmupCounter(Warmup(steps=2).factors(0.01))
        >>> [counter.factor("fc.weight") for _ in range(3)]
        [25.0, 5.0, 1.0]
    """

    __slots__ = ("_factors", "_steps")

    def __init__(self, factors: list[float]) -> None:
        self._factors = list(factors)
        self._steps: dict[str, int] = {}

    def factor(self, name: str) -> float:
        """This step's factor on the ratio of ``name``; counts the step."""
        step = self._steps.get(name, 0)
        self._steps[name] = step + 1
        return self._factors[min(step, len(self._factors) - 1)]

    @staticmethod
    def capped(ratio: float) -> float:
        return min(ratio, 1.0)

    def state_dict(self) -> dict[str, Any]:
        """Each gradient's step count."""
        return {"steps": dict(self._steps)}

    def validated(self, state: Any) -> dict[str, int]:
        """The step counts :meth:`restore` would load from ``state`` (None: none), or ValueError."""
        return checked_warmup_steps(state)

    def restore(self, steps: dict[str, int]) -> None:
        """Makes ``steps`` (from :meth:`validated`) the step counts; the others start at 0."""
        self._steps = dict(steps)
