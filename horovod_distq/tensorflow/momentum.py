"""``move_momentum`` for Keras optimizers (the rules: ``horovod_distq.momentum``)."""

from __future__ import annotations

import keras

from horovod_distq.momentum import moved_momentum


def move_momentum(optimizer: keras.optimizers.Optimizer) -> float:
    """Switches a Keras SGD optimizer's momentum off and returns it, for DistQ's momentum correction
    to apply instead (before the selection, as Deep Gradient Compression does).

    Args:
        optimizer: a ``keras.optimizers.SGD`` (or subclass) not yet used (built), without
            Nesterov momentum; it may already be wrapped by
            ``horovod_distq.tensorflow.keras.DistributedOptimizer``.

    Returns:
        The momentum it had (0.0 if it had none): pass it as ``DistQ(momentum=...)``.

    Raises:
        TypeError: not a Keras SGD optimizer (Adam's moments are not a momentum DistQ can take over).
        ValueError: the optimizer has been used (its momentum variables exist), or what
            :func:`horovod_distq.momentum.moved_momentum` refuses; nothing is changed.

    Example:
        >>> optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
        >>> compression = distq.DistQ(ratio=0.01, momentum=distq.move_momentum(optimizer))
        >>> optimizer = DistributedOptimizer(optimizer, compression=compression)
    """
    if not isinstance(optimizer, keras.optimizers.SGD):
        raise TypeError(f"move_momentum takes keras.optimizers.SGD's momentum; got {type(optimizer).__name__}")
    if optimizer.built:
        raise ValueError("move the momentum before the optimizer is used (built): its momentum variables exist")
    momentum = moved_momentum([optimizer.momentum], nesterov=optimizer.nesterov, dampening=0.0,
                              optimizer=type(optimizer).__name__)
    optimizer.momentum = 0.0
    return momentum
