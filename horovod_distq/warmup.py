"""Sparsity warm-up: send more of each gradient in the first steps, as Deep Gradient Compression does.

Early in training the gradients change fastest and the residuals of error feedback have not built
up, so a model compressed hard from the first step learns more slowly than dense training. The
warm-up sends every entry for ``dense_steps`` steps, then a ratio that decays exponentially from
``start_ratio`` to the target over ``steps`` steps (DGC: 25% down to 0.1% over the first epochs).

The schedule is a table of factors on the ratio, one per step, computed here once for both
frontends; each frontend counts every gradient's steps (a Python int in torch, a ``tf.Variable``
in a TensorFlow graph, so a traced step reads its factor without retracing) and keeps the counts
in the compressor's state, so a restart resumes the schedule where it stopped.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class Warmup:
    """A ratio schedule over the first steps of every compressed gradient.

    Args:
        steps: steps over which the ratio decays exponentially from ``start_ratio`` to the target.
        start_ratio: the ratio of the first decaying step, in (0, 1]; 0.25 as in DGC. Below the
            target, the target is used.
        dense_steps: steps before the decay that select every nonzero entry (ratio 1; the pairs
            then cost about twice a float32 allreduce).

    Example:
        >>> Warmup(steps=4, start_ratio=0.25).ratios(0.01)
        [0.25, 0.1118..., 0.05, 0.0223...]
        >>> DistQ(ratio=0.01, warmup=Warmup(steps=100))  # doctest: +SKIP
    """

    steps: int
    start_ratio: float = 0.25
    dense_steps: int = 0

    def __post_init__(self) -> None:
        for field_name in ("steps", "dense_steps"):
            value = getattr(self, field_name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Warmup({field_name}=...) must be a non-negative integer, got {value!r}")
        if (not isinstance(self.start_ratio, numbers.Real) or isinstance(self.start_ratio, bool)
                or not 0 < self.start_ratio <= 1):
            raise ValueError(f"Warmup(start_ratio=...) must be a number in (0, 1], got {self.start_ratio!r}")

    @property
    def length(self) -> int:
        """How many steps the warm-up lasts; from this step on, the ratio is the target."""
        return self.dense_steps + self.steps

    def ratios(self, target: float) -> list[float]:
        """The ratio of each warm-up step, for a compressor whose target ratio is ``target``."""
        start = max(self.start_ratio, target)
        decay = [start * (target / start) ** (step / self.steps) for step in range(self.steps)]
        return [1.0] * self.dense_steps + decay

    def factors(self, target: float) -> list[float]:
        """The warm-up's factor on the ratio at each step, then 1 (the last entry): what the
        frontends index with a gradient's step count, capped at the last entry."""
        return [ratio / target for ratio in self.ratios(target)] + [1.0]


# What ``DistQ(ratio)`` warms up with unless told otherwise (``warmup="auto"``): 50 steps from 25%
# down to the ratio (BENCHMARKS.md, convergence: early loss near dense's at a few percent of dense's
# bytes); with local Adam, 5 dense steps first: Adam's first directions are all about +-1, so a
# selection among them has nothing to choose by until the moments have seen a few gradients.
DEFAULT_WARMUP = Warmup(steps=50)
LOCAL_ADAM_WARMUP = Warmup(steps=50, dense_steps=5)


def warmup_from(value: Warmup | int | str | None) -> Warmup | str | None:
    """``DistQ(warmup=...)``: a :class:`Warmup`, a number of decaying steps (the defaults
    otherwise), "auto" (kept: :func:`default_warmup` decides), or None/0 for none.

    Raises:
        ValueError: anything else.
    """
    if value == "auto":
        return value
    if value is None or isinstance(value, Warmup):
        return value if value is None or value.length else None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return Warmup(steps=int(value)) if value else None
    raise ValueError(f"warmup must be a Warmup, a number of steps, 'auto' or None, got {value!r}")


def default_warmup(local_adam: bool) -> Warmup:
    """The warm-up ``warmup="auto"`` stands for: :data:`LOCAL_ADAM_WARMUP` under local Adam, else
    :data:`DEFAULT_WARMUP`."""
    return LOCAL_ADAM_WARMUP if local_adam else DEFAULT_WARMUP
