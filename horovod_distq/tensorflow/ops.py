"""Functional entry points to the compiled kernels, for TensorFlow tensors."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from horovod_distq import wire
from horovod_distq.families import DEFAULT_SAMPLE_SIZE, sparsify_arguments
from horovod_distq.selection import SparseSelection
from horovod_distq.tensorflow._library import ops as _ops

_FLOATING = (tf.float32, tf.float64, tf.float16, tf.bfloat16)


def sparsify(
    tensor: tf.Tensor,
    ratio: float | tf.Tensor,
    distribution: str = "normal",
    *,
    stages: int | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    **family_params: Any,
) -> SparseSelection:
    """Selects the entries of ``tensor`` beyond the threshold of a fitted distribution.

    The same operation, on the same compiled core, as ``horovod_distq.torch.sparsify``; how it fits
    and selects, and its arguments, are :mod:`horovod_distq.selection`'s. Runs eagerly and inside
    ``tf.function``; ``ratio`` may also be a scalar tensor, so a ratio that changes every step does
    not retrace.

    Returns:
        A :class:`horovod_distq.selection.SparseSelection` of TensorFlow tensors.

    Raises:
        ValueError: invalid ratio (given as a number), family, stage count or parameter.
        TypeError: a tensor that is not floating point, or a parameter of another family.
        tf.errors.InvalidArgumentError: a ratio tensor outside (0, 1].

    Example:
        >>> g = tf.random.normal([1_000_000])
        >>> sel = sparsify(g, 0.001)
        >>> int(tf.size(sel.indices))  # about 1000
    """
    dof, stages = sparsify_arguments(distribution, ratio, stages, **family_params)
    tensor = tf.convert_to_tensor(tensor)
    if tensor.dtype not in _FLOATING:
        raise TypeError(f"sparsify expects a float32, float64, float16 or bfloat16 tensor, got {tensor.dtype.name}")
    numel = tensor.shape.num_elements()
    indices, values, threshold, center = _ops.distq_sparsify(
        tensor,
        tf.cast(ratio, tf.float64),
        distribution=distribution,
        dof=dof,
        sample_size=int(sample_size),
        stages=stages,
        Tindex=tf.as_dtype(wire.index_dtype(numel if numel is not None else wire.INT32_INDEX_LIMIT)),
    )
    compute = tf.float64 if tensor.dtype == tf.float64 else tf.float32
    return SparseSelection(indices, values, tf.cast(threshold, compute), tf.cast(center, compute))


def initial_loop_state(target: float) -> tf.Tensor:
    """The closed-loop state (4 float64) of a tensor not seen before; see ``csrc/core/control.h``."""
    return _ops.distq_initial_loop_state(tf.constant(target, tf.float64))


def update_loop_state(state: tf.Tensor, selected: tf.Tensor, numel: int, target: float | tf.Tensor) -> tf.Tensor:
    """The closed-loop state after a fit at ``exp(state[0])`` selected ``selected`` of ``numel`` entries."""
    # A Python number goes straight to float64: tf.cast would round it through float32 first.
    target = tf.cast(target, tf.float64) if isinstance(target, tf.Tensor) else tf.constant(target, tf.float64)
    return _ops.distq_update_loop_state(state, tf.cast(selected, tf.int64), tf.constant(numel, tf.int64), target)
