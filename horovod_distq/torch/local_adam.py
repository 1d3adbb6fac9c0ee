"""``move_adam`` for torch optimizers (the rules: ``horovod_distq.local_adam``)."""

from __future__ import annotations

import torch

from horovod_distq.local_adam import LocalAdam, moved_adam


def move_adam(optimizer: torch.optim.Adam) -> tuple[torch.optim.SGD, LocalAdam]:
    """The plain SGD optimizer and the :class:`horovod_distq.LocalAdam` settings that make DistQ's
    local Adam train as ``optimizer`` would: Adam's moments move in front of the compressor.

    The SGD optimizer has ``optimizer``'s parameter groups and learning rates; AdamW's decoupled
    weight decay becomes SGD's ``weight_decay`` (the same update: ``p -= lr * (direction + wd * p)``).
    Make learning-rate schedulers for the SGD optimizer, and use it in place of ``optimizer``.

    Args:
        optimizer: a ``torch.optim.Adam`` or ``AdamW`` not yet stepped, whose groups share betas
            and eps, without amsgrad, maximize or Adam's L2 weight decay (AdamW's is fine).

    Returns:
        ``(sgd, adam)``: pass ``adam`` as ``DistQ(adam=...)`` and give ``sgd`` to
        ``hvd.DistributedOptimizer``.

    Raises:
        TypeError: not an Adam optimizer.
        ValueError: it has stepped (its moments exist), or what
            :func:`horovod_distq.local_adam.moved_adam` refuses.

    Example:
        >>> sgd, adam = move_adam(torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01))
        >>> compression = DistQ(ratio=0.01, adam=adam)
        >>> optimizer = hvd.DistributedOptimizer(sgd, named_parameters=model.named_parameters(),
        ...                                      compression=compression)
    """
    if not isinstance(optimizer, torch.optim.Adam):
        raise TypeError(f"move_adam takes torch.optim.Adam or AdamW; got {type(optimizer).__name__}")
    if optimizer.state:
        raise ValueError("move Adam before its first step: the moments it has kept cannot be moved into DistQ")
    groups = optimizer.param_groups
    decoupled = [isinstance(optimizer, torch.optim.AdamW) or g.get("decoupled_weight_decay", False) for g in groups]
    refused = {
        "amsgrad": any(g["amsgrad"] for g in groups),
        "maximize": any(g["maximize"] for g in groups),
        "L2 weight_decay (AdamW's decoupled one moves)": any(
            g["weight_decay"] and not d for g, d in zip(groups, decoupled, strict=True)),
    }
    adam = moved_adam((g["betas"] for g in groups), (g["eps"] for g in groups), refused=refused,
                      optimizer=type(optimizer).__name__)
    sgd = torch.optim.SGD([{"params": g["params"], "lr": g["lr"], "weight_decay": g["weight_decay"]} for g in groups],
                          lr=groups[0]["lr"])
    return sgd, adam
