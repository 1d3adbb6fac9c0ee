"""``move_momentum`` for torch optimizers (the rules: ``horovod_distq.momentum``)."""

from __future__ import annotations

import torch

from horovod_distq.momentum import moved_momentum


def move_momentum(optimizer: torch.optim.Optimizer) -> float:
    """Switches an SGD optimizer's momentum off and returns it, for DistQ's momentum correction to
    apply instead (before the selection, as Deep Gradient Compression does).

    Call it before training, after loading the optimizer's checkpoint (a checkpoint saved with
    the momentum on would switch it back on). The optimizer may be wrapped by
    ``hvd.DistributedOptimizer`` before or after: they share the parameter groups.

    Args:
        optimizer: a ``torch.optim.SGD`` (or subclass) whose parameter groups share one momentum,
            without Nesterov momentum or dampening.

    Returns:
        The momentum it had (0.0 if it had none): pass it as ``DistQ(momentum=...)`` or
        ``DistQState(momentum=...)``.

    Raises:
        TypeError: not an SGD optimizer (Adam's moments are not a momentum DistQ can take over).
        ValueError: what :func:`horovod_distq.momentum.moved_momentum` refuses; nothing is changed.

    Example:
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> compression = DistQ(ratio=0.01, momentum=move_momentum(optimizer))   # optimizer: momentum 0
        >>> optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters(),
        ...                                      compression=compression)
    """
    if not isinstance(optimizer, torch.optim.SGD):
        raise TypeError(f"move_momentum takes torch.optim.SGD's momentum; got {type(optimizer).__name__}")
    groups = optimizer.param_groups
    dampening = next((g["dampening"] for g in groups if g["dampening"]), 0.0)
    momentum = moved_momentum((g["momentum"] for g in groups), nesterov=any(g["nesterov"] for g in groups),
                              dampening=dampening, optimizer=type(optimizer).__name__)
    for group in groups:
        group["momentum"] = 0.0
    return momentum
