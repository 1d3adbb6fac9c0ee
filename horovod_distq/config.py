"""DistQ's settings: defined, documented and validated once, for every frontend.

Each frontend's compressor (``horovod_distq.torch.DistQ``, ``horovod_distq.tensorflow.DistQ``,
``horovod_distq.torch.ddp.DistQState``) spells the settings out in its own signature, so that
``help()`` and IDEs show them with their defaults; ``tests/unit/test_settings.py`` fails when one of
those signatures drifts from :class:`DistQConfig`, and :func:`document_settings` writes this class's
documentation of each setting into the frontend's docstring.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from horovod_distq.encodings import value_encoding
from horovod_distq.exchange_cost import EXCHANGE_MODES
from horovod_distq.families import DEFAULT_SAMPLE_SIZE, default_stages, sparsify_arguments
from horovod_distq.local_adam import LocalAdam, local_adam_from
from horovod_distq.warmup import Warmup, default_warmup, warmup_from


@dataclass(frozen=True)
class DistQConfig:
    """What a DistQ compressor does to each gradient: every setting, its default and its rules.

    Args:
        ratio: target fraction of entries sent per compressed gradient, in (0, 1] (a Python or
            NumPy number).
        distribution: family of ``horovod_distq.FAMILIES`` the threshold is fitted from; "auto"
            (default): a Student-t body and generalized-Pareto tail stages, the closest hit of ``ratio``.
        error_feedback: add what was not sent to the next step's gradient (claim 9).
        min_numel: gradients with fewer entries go dense through Horovod's allreduce.
        sample_size: size of the strided sample medians and quartiles are estimated from.
        value_encoding: how selected values travel: "auto" (the gradient's dtype), "float32",
            "float16", "bfloat16" or "sign" (sign in the index, one scale per sign); see
            ``horovod_distq.VALUE_ENCODINGS``. With error feedback the encoding error stays in the residual.
        stages: peaks-over-threshold stages of the fit, 1 to 16; None: 3 for ``distribution="auto"``, else 1.
        closed_loop: per gradient, correct the ratio fed to the fit from the ratio it achieved in
            earlier steps (the compiled core's rule), so the achieved ratio converges to ``ratio``
            over a few steps. Costs no pass over the tensor.
        exchange: "auto": a gradient goes sparse only while its pairs cost no more bytes than a
            dense allreduce at the process set's size (up to about 1 / ratio ranks for float32;
            ``horovod_distq.exchange_cost``), and under torch's ``hvd.DistributedOptimizer`` each
            step's exchange (the allgather, two-phase or dense) is the one measured fastest
            (``horovod_distq.exchange_policy``; README "Scale"); "sparse": always, by the
            allgather; "dense": never (a Horovod allreduce of the gradient plus any residual
            left); "two_phase": always sparse, by the two-phase exchange (an alltoall to the
            entries' owners, who sum and select again, then an allgather of what they selected:
            about 2k pairs per rank whatever the number of ranks; torch's
            ``hvd.DistributedOptimizer`` only so far).
        warmup: a sparsity warm-up (Deep Gradient Compression's): a :class:`horovod_distq.Warmup`
            (every entry for its ``dense_steps`` steps, then a ratio decaying exponentially from its
            ``start_ratio``, 0.25 by default, to ``ratio`` over its ``steps`` steps), or a number of
            decaying steps; None or 0: none. "auto" (default): ``Warmup(steps=50)``, early loss
            near dense's for a few percent more bytes, and under local Adam
            ``Warmup(steps=50, dense_steps=5)`` (README, Accuracy). Counted per gradient and kept
            in ``state_dict()``, so a resumed run goes on with the schedule. The closed loop keeps
            learning during it (it corrects the warm-up's ratio by the same factor); the choice of
            sparse or dense under ``exchange="auto"`` is made at ``ratio``.
        momentum: Deep Gradient Compression's momentum correction, in [0, 1): with 0.9, say, error
            feedback accumulates each gradient's velocity ``u = 0.9 * u + gradient`` instead of the
            gradient, the pairs are selected from that, and a sent entry clears its velocity
            (momentum factor masking); gradients sent dense send their velocity. Switch the
            optimizer's own momentum off (SGD ``momentum=0``): this is the momentum. Needs
            ``error_feedback=True``; velocities are part of ``state_dict()``.
        adam: local Adam, a :class:`horovod_distq.LocalAdam` (True: its defaults) or None: each
            worker keeps Adam's moments of its own dense gradient and turns it into its Adam
            direction ``m_hat / (sqrt(v_hat) + eps)``, which error feedback accumulates and the
            pairs are selected from; gradients sent dense send their direction. The optimizer
            must then be plain SGD with Adam's learning rate (``move_adam`` makes it from an Adam
            or AdamW optimizer). For Adam-trained models: Adam fed sparse averages takes steps too
            small where entries are sent rarely (README, Accuracy). Needs ``error_feedback=True``,
            excludes ``momentum``; the moments and step counts are part of ``state_dict()``.
        family_params: the family's keyword parameters (``dof`` for ``student_t``); the
            compressors take them as keyword arguments (``DistQ(0.01, "student_t", dof=4)``).

    Raises:
        ValueError: an invalid setting.
        TypeError: a parameter the family does not take.

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
    warmup: Warmup | int | str | None = "auto"
    momentum: float = 0.0
    adam: LocalAdam | bool | None = None
    family_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "warmup", warmup_from(self.warmup))
        if not _is_number(self.momentum) or not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be a number in [0, 1), got {self.momentum!r}")
        object.__setattr__(self, "momentum", float(self.momentum))
        if self.momentum and not self.error_feedback:
            raise ValueError("momentum correction accumulates the velocity in error feedback: it needs "
                             "error_feedback=True")
        object.__setattr__(self, "adam", local_adam_from(self.adam))
        if self.adam is not None and not self.error_feedback:
            raise ValueError("local Adam accumulates its directions in error feedback: it needs error_feedback=True")
        if self.adam is not None and self.momentum:
            raise ValueError("local Adam has its own momentum (beta1): give adam or momentum, not both")
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
        if self.exchange == "two_phase" and not self.two_phase_possible:
            # Momentum factor masking and local Adam follow what this rank sent, and the owners
            # sum values, which the sign encoding does not send.
            raise ValueError("exchange='two_phase' takes neither momentum, adam nor value_encoding='sign': "
                             "the owners select again from summed values")

    def refuse_two_phase(self, frontend: str) -> None:
        """Raises ValueError under ``exchange="two_phase"``: ``frontend`` has no two-phase exchange yet."""
        if self.exchange == "two_phase":
            raise ValueError(f"exchange='two_phase' runs under torch (hvd.DistributedOptimizer and the DDP hook) "
                             f"only so far, not {frontend}: use exchange='auto' there")

    @property
    def two_phase_possible(self) -> bool:
        """Whether the two-phase exchange can carry these gradients: not with momentum correction
        or local Adam (which follow what this rank sent), nor the sign encoding (no values to sum)."""
        return not (self.transforms_gradients or value_encoding(self.value_encoding).sign_in_index)

    @property
    def transforms_gradients(self) -> bool:
        """Whether each gradient is turned into an optimizer's update direction before it is
        accumulated or sent (momentum correction, local Adam), so every gradient has state."""
        return bool(self.momentum) or self.adam is not None

    @property
    def warmup_schedule(self) -> Warmup | None:
        """The warm-up the compressor runs: ``warmup``, with "auto" resolved (none: None)."""
        return default_warmup(self.adam is not None) if self.warmup == "auto" else self.warmup

    @property
    def warmup_factors(self) -> list[float]:
        """The warm-up's factor on the ratio at each step, the last one (1) for every later step."""
        schedule = self.warmup_schedule
        return schedule.factors(self.ratio) if schedule is not None else [1.0]

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

    def settings(self) -> dict[str, Any]:
        """The keyword arguments a compressor was made with (``family_params`` spread out), to make
        another with the same settings.

        Example:
            >>> DistQConfig(ratio=0.01, distribution="student_t", family_params={"dof": 4}).settings()["dof"]
            4
        """
        named = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "family_params"}
        return {**named, **self.family_params}


def setting_names() -> list[str]:
    """The settings a compressor's signature takes by name, in order (``family_params`` is its ``**``)."""
    return [f.name for f in dataclasses.fields(DistQConfig) if f.name != "family_params"]


def settings_documentation() -> str:
    """The ``Args:`` entries of :class:`DistQConfig`'s docstring: each setting's documentation."""
    doc = DistQConfig.__doc__ or ""
    return doc.split("    Args:\n", 1)[1].split("\n\n", 1)[0]


Documented = TypeVar("Documented", bound=Callable[..., Any])


def document_settings(compressor: Documented) -> Documented:
    """Class decorator: writes each setting's documentation (:func:`settings_documentation`) into
    the class docstring where it says ``{settings}``, so that ``help()`` shows it beside the
    frontend's own arguments and nothing is written out twice."""
    doc = compressor.__doc__ or ""
    if "{settings}" not in doc:
        raise ValueError(f"{compressor.__name__}'s docstring has no {{settings}} to fill in")
    compressor.__doc__ = doc.replace("{settings}", settings_documentation().strip())
    return compressor


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
