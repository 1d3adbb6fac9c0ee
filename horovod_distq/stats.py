"""Per-tensor records of what the last step selected and sent."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorStats:
    """What one compressed (or dense) tensor did in the last step on this rank.

    Attributes:
        numel: entries in the gradient.
        selected: entries this rank sent (numel for a dense tensor).
        threshold: the fitted threshold, None for a tensor sent dense.
        bytes_sent: bytes this rank contributed to the collectives for this tensor.
        dense_bytes: bytes a dense allreduce of the gradient would have contributed.
    """

    numel: int
    selected: int
    threshold: float | None
    bytes_sent: int
    dense_bytes: int

    @property
    def achieved_ratio(self) -> float:
        """selected / numel."""
        return self.selected / self.numel if self.numel else 0.0

    @property
    def dense(self) -> bool:
        """True when the tensor bypassed compression."""
        return self.threshold is None
