"""Local Adam: Adam's preconditioning moved in front of the compressor, for both frontends.

Adam divides each coordinate's step by the root of its second moment. Fed DistQ's averaged sparse
gradient, it sees an entry that is sent once every K steps as one gradient K times larger, so its
second moment grows about K times and the coordinate moves about 1/sqrt(K) as far as under dense
training (README, Accuracy). With ``DistQ(adam=LocalAdam())`` each worker keeps Adam's moments of
its own dense gradient and turns the gradient into its Adam direction
``m_hat / (sqrt(v_hat) + eps)`` before error feedback and the selection; the ranks average the
directions and a plain SGD optimizer (learning rate as Adam's) applies them. It is to Adam what
momentum correction is to SGD's momentum: the optimizer's state moves to the workers, where every
gradient is dense.

``move_adam`` of ``horovod_distq.torch`` and of ``horovod_distq.tensorflow`` make the SGD optimizer
and the :class:`LocalAdam` settings from an Adam or AdamW optimizer in one line.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class LocalAdam:
    """Adam's moments, kept per gradient on each worker (``DistQ(adam=...)``).

    Args:
        beta1: decay of the first moment, in [0, 1).
        beta2: decay of the second moment, in [0, 1).
        eps: added to the root of the second moment, > 0.

    Example:
        >>> LocalAdam().bias_corrections(1)
        (0.1..., 0.001...)
        >>> DistQ(ratio=0.01, adam=LocalAdam(beta2=0.99))  # doctest: +SKIP
    """

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        for field_name in ("beta1", "beta2"):
            value = getattr(self, field_name)
            if not _is_number(value) or not 0 <= value < 1:
                raise ValueError(f"LocalAdam({field_name}=...) must be a number in [0, 1), got {value!r}")
        if not _is_number(self.eps) or self.eps <= 0:
            raise ValueError(f"LocalAdam(eps=...) must be a positive number, got {self.eps!r}")

    def bias_corrections(self, step: int) -> tuple[float, float]:
        """Adam's ``(1 - beta1**step, 1 - beta2**step)`` at ``step`` (1 for the first step)."""
        return 1 - self.beta1**step, 1 - self.beta2**step


def local_adam_from(value: LocalAdam | bool | None) -> LocalAdam | None:
    """``DistQ(adam=...)``: a :class:`LocalAdam`, True for its defaults, or None/False for none.

    Raises:
        ValueError: anything else.
    """
    if value is None or value is False:
        return None
    if value is True:
        return LocalAdam()
    if isinstance(value, LocalAdam):
        return value
    raise ValueError(f"adam must be a LocalAdam, True or None, got {value!r}")


def moved_adam(
    betas: Iterable[tuple[float, float]], epsilons: Iterable[float], *, refused: dict[str, bool], optimizer: str
) -> LocalAdam:
    """The one :class:`LocalAdam` an Adam optimizer's parameter groups share, if DistQ can take it over.

    Args:
        betas: each parameter group's ``(beta1, beta2)``.
        epsilons: each parameter group's ``eps``.
        refused: options local Adam does not have, each with whether the optimizer uses it
            (``amsgrad``, L2 ``weight_decay`` added to the gradient, ...).
        optimizer: the optimizer's class name, for the messages.

    Raises:
        ValueError: the groups differ in betas or eps, or the optimizer uses a refused option.
    """
    used = sorted(option for option, on in refused.items() if on)
    if used:
        raise ValueError(f"{optimizer} uses {', '.join(used)}, which DistQ's local Adam does not have")
    distinct = sorted({(float(b1), float(b2), float(eps)) for (b1, b2), eps in zip(betas, epsilons, strict=True)})
    if len(distinct) != 1:
        raise ValueError(f"{optimizer}'s parameter groups have different (beta1, beta2, eps) {distinct}: DistQ's "
                         "local Adam applies one setting to every gradient")
    beta1, beta2, eps = distinct[0]
    return LocalAdam(beta1=beta1, beta2=beta2, eps=eps)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
