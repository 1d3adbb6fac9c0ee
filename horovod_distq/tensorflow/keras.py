"""Keras 3 with Horovod, with or without DistQ: an optimizer that reduces inside ``model.fit``.

Horovod 0.28.1's ``horovod.tensorflow.keras`` targets Keras 2: with Keras 3, ``model.fit`` never
calls its compression and reduces nothing (each rank trains alone, silently), and its callbacks
fail. :func:`DistributedOptimizer` wraps a Keras 3 optimizer so that every ``apply`` (the
``apply_gradients`` of ``fit``'s train step, or of a custom loop) first reduces the gradients
across ranks with :class:`horovod_distq.tensorflow.reduction.GradientReducer`: DistQ's sparse
exchange, a Horovod compressor, or plain dense allreduce. The callbacks that go with it are in
:mod:`horovod_distq.tensorflow.callbacks`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import horovod.tensorflow as hvd
import keras

from horovod_distq.tensorflow.callbacks import (
    BroadcastGlobalVariablesCallback,
    DistQCheckpoint,
    MetricAverageCallback,
    broadcast_variables,
)
from horovod_distq.tensorflow.compressor import DistQ
from horovod_distq.tensorflow.local_adam import move_adam
from horovod_distq.tensorflow.reduction import GradientReducer
from horovod_distq.tensorflow.telemetry import DistQTensorBoard

__all__ = [
    "BroadcastGlobalVariablesCallback",
    "DistQCheckpoint",
    "DistQTensorBoard",
    "DistributedOptimizer",
    "MetricAverageCallback",
    "broadcast_variables",
]


def DistributedOptimizer(
    optimizer: keras.optimizers.Optimizer,
    compression: Any = None,
    op: Any = hvd.Average,
    gradient_predivide_factor: float = 1.0,
    process_set: hvd.ProcessSet = hvd.global_process_set,
    local_adam: bool = True,
) -> keras.optimizers.Optimizer:
    """Makes a Keras 3 optimizer reduce its gradients across ranks before applying them.

    Given an Adam or AdamW optimizer and a :class:`horovod_distq.tensorflow.DistQ`, it moves Adam's
    moments into the DistQ (:func:`horovod_distq.tensorflow.move_adam`): each worker turns its
    dense gradient into its Adam direction before the selection, and a Keras SGD with Adam's
    learning rate applies the averaged directions. Adam fed DistQ's sparse averages trains
    measurably worse (README, Accuracy). ``local_adam=False`` keeps the Adam as it is.

    Args:
        optimizer: a Keras 3 optimizer, not yet used; for mixed precision, the
            ``keras.optimizers.LossScaleOptimizer`` around it (so that the gradients are reduced
            before its check that they are finite, which every rank then makes alike).
        compression: a :class:`horovod_distq.tensorflow.DistQ` (made outside any ``tf.function``),
            a Horovod compressor such as ``hvd.Compression.fp16``, or None for dense allreduce.
        op: ``hvd.Average`` or ``hvd.Sum``.
        gradient_predivide_factor: as in Horovod (``op=hvd.Average`` only).
        process_set: the ranks to reduce over (a DistQ must be made with the same one).
        local_adam: with an Adam or AdamW optimizer and a DistQ, move Adam into the DistQ.

    Returns:
        ``optimizer`` itself, now of a subclass of its class whose ``apply`` and ``apply_gradients``
        reduce first (on one worker: nothing to reduce, as in Horovod); where Adam moved into the
        DistQ, the Keras SGD that replaces it, wrapped alike. A model saved with it stores the
        plain optimizer: wrap it again after loading.

    Raises:
        TypeError: ``optimizer`` is not a Keras 3 optimizer.
        ValueError: an unsupported ``op`` or factor, ``optimizer`` has been used already, an
            optimizer whose momentum or Adam the DistQ has already (applied twice), or an Adam
            that local Adam cannot take over (amsgrad, gradient clipping: ``local_adam=False``).
        RuntimeError: at the first step, under ``jit_compile=True`` (Horovod's ops have no XLA
            kernels), or when Keras wrapped it in a LossScaleOptimizer (mixed precision) itself.

    Example:
        >>> compression = distq.DistQ(ratio=0.01)
        >>> optimizer = DistributedOptimizer(keras.optimizers.SGD(0.01), compression=compression)
        >>> model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", jit_compile=False)
        >>> model.fit(x, y, callbacks=[BroadcastGlobalVariablesCallback(0), MetricAverageCallback()])
    """
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(f"expected a Keras 3 optimizer, got {type(optimizer).__name__}")
    if optimizer.built:
        raise ValueError("wrap the optimizer before it is used (built): its compressor's state is built with it")
    if isinstance(optimizer, _ReducingOptimizer):
        raise ValueError("this optimizer reduces its gradients already")
    if isinstance(compression, DistQ):
        optimizer = _moved_adam(optimizer, compression, local_adam)
    reducer = GradientReducer(compression, op, gradient_predivide_factor, process_set)
    base = type(optimizer)
    # Named and placed like its base, so that Keras saves (and loads) the plain optimizer. The
    # optimizer itself changes class: a copy from get_config() would lose what the config does
    # not hold (AdamW's exclude_from_weight_decay, say).
    optimizer.__class__ = type(base.__name__, (_ReducingOptimizer, base), {"__module__": base.__module__})
    optimizer._reduce_gradients = reducer
    return optimizer


def _moved_adam(
    optimizer: keras.optimizers.Optimizer, compression: DistQ, local_adam: bool
) -> keras.optimizers.Optimizer:
    """The optimizer to wrap beside a DistQ: for an Adam, the SGD of ``move_adam``, with local Adam
    switched on in ``compression`` (unless ``local_adam`` is False or the DistQ has momentum
    correction); any other optimizer as it is. Raises where the DistQ and the optimizer would
    both apply Adam, or both momentum."""
    is_adam = isinstance(optimizer, keras.optimizers.Adam)
    has_momentum = isinstance(optimizer, keras.optimizers.SGD) and optimizer.momentum > 0
    if is_adam and compression.config.adam is not None:
        _refuse_twice(optimizer, "local Adam", "Adam")
    if has_momentum and compression.config.momentum:
        _refuse_twice(optimizer, "momentum correction", "momentum")
    if not (is_adam and local_adam) or compression.config.transforms_gradients:
        return optimizer
    try:
        sgd, adam = move_adam(optimizer)
        compression.use_local_adam(adam)
    except ValueError as error:
        raise ValueError(f"{error}; pass local_adam=False to keep {type(optimizer).__name__} as it is "
                         "(README, Accuracy)") from None
    return sgd


def _refuse_twice(optimizer: keras.optimizers.Optimizer, mechanism: str, own: str) -> None:
    raise ValueError(f"the DistQ has {mechanism} and {type(optimizer).__name__}'s own {own} would apply it "
                     "again: pass the optimizer move_adam or move_momentum made, or a DistQ without it")


class _ReducingOptimizer:
    """The methods a distributed optimizer adds to its Keras class: reduce, then apply; and build
    the compressor's state with the optimizer's (eagerly, when ``BroadcastGlobalVariablesCallback``
    builds the optimizer before ``fit``'s first trace)."""

    _reduce_gradients: GradientReducer

    def build(self, variables: list[Any]) -> None:
        super().build(variables)
        self._reduce_gradients.build(variables)

    def apply(self, grads: Iterable[Any], trainable_variables: Iterable[Any] | None = None) -> Any:
        grads = list(grads)
        variables = list(trainable_variables) if trainable_variables is not None else self._trainable_variables
        return super().apply(self._reduce_gradients(grads, variables), trainable_variables)
