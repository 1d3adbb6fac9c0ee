"""``move_adam`` for Keras optimizers (the rules: ``horovod_distq.local_adam``)."""

from __future__ import annotations

import keras

from horovod_distq.local_adam import LocalAdam, moved_adam

# Keras Adam's settings that local Adam takes over or has no place for in SGD.
_ADAM_ONLY = ("beta_1", "beta_2", "epsilon", "amsgrad")


def move_adam(optimizer: keras.optimizers.Adam) -> tuple[keras.optimizers.SGD, LocalAdam]:
    """The Keras SGD optimizer and the :class:`horovod_distq.LocalAdam` settings that make DistQ's
    local Adam train as ``optimizer`` would: Adam's moments move in front of the compressor.

    The SGD optimizer takes ``optimizer``'s learning rate (or schedule), weight decay (decoupled
    in Keras 3, as AdamW's), name, EMA and accumulation settings.

    Args:
        optimizer: a ``keras.optimizers.Adam`` or ``AdamW`` not yet used (built), without amsgrad
            or gradient clipping (which would clip Adam's directions, not the gradients).

    Returns:
        ``(sgd, adam)``: pass ``adam`` as ``DistQ(adam=...)`` and use ``sgd`` in place of ``optimizer``.

    Raises:
        TypeError: not a Keras Adam optimizer.
        ValueError: it has been used, or what :func:`horovod_distq.local_adam.moved_adam` refuses.

    Example:
        >>> sgd, adam = distq.move_adam(keras.optimizers.AdamW(1e-3))
        >>> optimizer = DistributedOptimizer(sgd, compression=distq.DistQ(ratio=0.01, adam=adam))
    """
    if not isinstance(optimizer, keras.optimizers.Adam):
        raise TypeError(f"move_adam takes keras.optimizers.Adam or AdamW; got {type(optimizer).__name__}")
    if optimizer.built:
        raise ValueError("move Adam before the optimizer is used (built): the moments it has kept cannot be moved")
    config = optimizer.get_config()
    clipping = any(config.get(option) is not None for option in ("clipnorm", "global_clipnorm", "clipvalue"))
    adam = moved_adam([(config["beta_1"], config["beta_2"])], [config["epsilon"]],
                      refused={"amsgrad": config["amsgrad"], "gradient clipping": clipping},
                      optimizer=type(optimizer).__name__)
    settings = {key: value for key, value in config.items() if key not in _ADAM_ONLY}
    return keras.optimizers.SGD.from_config({**settings, "momentum": 0.0, "nesterov": False}), adam
