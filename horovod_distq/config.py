"""Validated configuration shared by the PyTorch and TensorFlow compressors."""

from __future__ import annotations

import math
import numbers
import zlib
from dataclasses import dataclass, field
from typing import Any

from horovod_distq.encodings import value_encoding
from horovod_distq.exchange_cost import EXCHANGE_MODES
from horovod_distq.families import DEFAULT_SAMPLE_SIZE, default_stages, sparsify_arguments
from horovod_distq.warmup import Warmup, warmup_from


@dataclass(frozen=True)
class DistQConfig:
    """What a DistQ compressor does to each gradient.

    Args:
        ratio: target fraction of entries sent per compressed tensor, in (0, 1].
        distribution: family the threshold is fitted from (see ``horovod_distq.FAMILIES``).
        error_feedback: keep what was not sent and add it to the next gradient (claim 9).
        min_numel: tensors with fewer entries go dense through Horovod's allreduce.
        sample_size: size of the strided sample medians and quartiles are estimated from.
        value_encoding: how selected values travel (see ``horovod_distq.VALUE_ENCODINGS``).
        stages: peaks-over-threshold stages of the fit (1 = a single fit); None: 3 for ``auto``, else 1.
        closed_loop: correct the ratio fed to the fit per tensor from the achieved ratio.
        exchange: "auto" (each tensor sparse while its pairs cost fewer bytes than a dense
            allreduce at the process set's size: ``horovod_distq.exchange_cost``), "sparse" or "dense".
        family_params: the family's keyword parameters (``dof`` for ``student_t``).
        warmup: a :class:`horovod_distq.Warmup` schedule of higher ratios over the first steps, a
            number of steps (its defaults otherwise), or None.
        momentum: Deep Gradient Compression's momentum correction, in [0, 1): 0 (off), or the
            momentum of the velocity that error feedback accumulates instead of the gradient.

    Example:
        >>> DistQConfig(ratio=0.01, distribution="auto").fit_stages
        3
    """

    ratio: float
    distribution: str = "auto"
    error_feedback: bool = True
    min_numel: int = 1024
    sample_size: int = DEFAULT_SAMPLE_SIZE
    value_encoding: str = "auto"
    stages: int | None = None
    closed_loop: bool = True
    exchange: str = "auto"
    family_params: dict[str, Any] = field(default_factory=dict)
    warmup: Warmup | int | None = None
    momentum: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "warmup", warmup_from(self.warmup))
        if not _is_number(self.momentum) or not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be a number in [0, 1), got {self.momentum!r}")
        object.__setattr__(self, "momentum", float(self.momentum))
        if self.momentum and not self.error_feedback:
            raise ValueError("momentum correction accumulates the velocity in error feedback: it needs "
                             "error_feedback=True")
        if not _is_number(self.ratio) or not 0 < self.ratio <= 1:
            raise ValueError(f"ratio must be a number in (0, 1], got {self.ratio!r}")
        object.__setattr__(self, "ratio", float(self.ratio))  # NumPy scalars too, stored as a Python float
        if not _is_int(self.min_numel) or self.min_numel < 0:
            raise ValueError(f"min_numel must be a non-negative integer, got {self.min_numel!r}")
        if not _is_int(self.sample_size) or self.sample_size < 1:
            raise ValueError(f"sample_size must be a positive integer, got {self.sample_size!r}")
        sparsify_arguments(self.distribution, float(self.ratio), self.stages, **self.family_params)
        value_encoding(self.value_encoding)
        if self.exchange not in EXCHANGE_MODES:
            raise ValueError(f"exchange must be one of {EXCHANGE_MODES}, got {self.exchange!r}")

    @property
    def warmup_factors(self) -> list[float]:
        """The warm-up's factor on the ratio at each step, the last one (1) for every later step."""
        return self.warmup.factors(self.ratio) if self.warmup is not None else [1.0]

    def agreement_key(self) -> int:
        """A checksum of what every rank must share for their exchanges to match: which gradients
        are compressed (``min_numel``, ``exchange``) and how their values travel (``value_encoding``).

        Ratios may differ per rank. With ``exchange="auto"``, ranks whose ratios put them on
        either side of the crossover send a tensor differently, and fail in Horovod's shape check
        of the allreduce both join."""
        return zlib.crc32(f"{self.min_numel}:{self.value_encoding}:{self.exchange}".encode())

    def check_agreement(self, keys: list[int]) -> None:
        """Raises on every rank when the ranks' :meth:`agreement_key` values differ.

        Args:
            keys: every rank's key, in rank order (from an allgather).

        Raises:
            ValueError: the ranks disagree; a step would fail or wait in a collective only some join.
        """
        if len(set(keys)) > 1:
            raise ValueError(
                f"DistQ: ranks were given different min_numel, value_encoding or exchange (this rank: min_numel="
                f"{self.min_numel}, value_encoding={self.value_encoding!r}, exchange={self.exchange!r}; agreement "
                f"keys by rank: {keys}). "
                "Give every rank the same DistQ settings."
            )

    @property
    def fit_stages(self) -> int:
        """The number of stages the fit runs."""
        return default_stages(self.distribution) if self.stages is None else self.stages


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
