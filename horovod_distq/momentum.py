"""Moving an optimizer's momentum into DistQ's momentum correction: the rules, for both frontends.

Momentum correction (``DistQ(momentum=...)``) applies the momentum before the selection, so the
optimizer's own must be off. ``move_momentum`` of ``horovod_distq.torch`` and of
``horovod_distq.tensorflow`` read an SGD optimizer's momentum, switch it off and return it, so that
one line turns it on:  ``DistQ(0.01, momentum=move_momentum(optimizer))``.
"""

from __future__ import annotations

from collections.abc import Iterable


def moved_momentum(momenta: Iterable[float], *, nesterov: bool, dampening: float, optimizer: str) -> float:
    """The one momentum an optimizer's parameter groups share, if DistQ can take it over.

    Args:
        momenta: each parameter group's momentum.
        nesterov: whether the optimizer uses Nesterov momentum.
        dampening: the optimizer's dampening (0 for Keras).
        optimizer: the optimizer's class name, for the messages.

    Returns:
        The momentum, in [0, 1).

    Raises:
        ValueError: the groups differ, Nesterov momentum or dampening (momentum correction is
            plain heavy-ball momentum), or a momentum outside [0, 1).
    """
    distinct = sorted(set(float(m) for m in momenta))
    if len(distinct) != 1:
        raise ValueError(f"{optimizer}'s parameter groups have different momenta {distinct}: DistQ's momentum "
                         "correction applies one momentum to every gradient")
    if nesterov:
        raise ValueError(f"{optimizer} uses Nesterov momentum; DistQ's momentum correction is plain momentum "
                         "(u = m * u + g): make the optimizer with nesterov=False")
    if dampening:
        raise ValueError(f"{optimizer} has dampening={dampening}; DistQ's momentum correction has none")
    momentum = distinct[0]
    if not 0 <= momentum < 1:
        raise ValueError(f"{optimizer}'s momentum {momentum} is outside [0, 1)")
    return momentum
