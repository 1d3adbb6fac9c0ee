"""Functional entry points to the compiled kernels, for TensorFlow tensors."""

from __future__ import annotations

from typing import Any, NamedTuple

import tensorflow as tf

from horovod_distq.families import sparsify_arguments
from horovod_distq.tensorflow._library import ops as _ops

DEFAULT_SAMPLE_SIZE = 4096
_INT32_INDEX_LIMIT = 2**31


class SparseSelection(NamedTuple):
    """Entries of a tensor beyond a fitted threshold.

    Attributes:
        indices: flattened (row-major) positions, int32 when numel < 2^31, else int64.
        values: the entries at those positions, in the tensor's dtype.
        threshold: scalar, float64 for float64 input and float32 otherwise.
        center: scalar of the same dtype; 0 for magnitude families.
    """

    indices: tf.Tensor
    values: tf.Tensor
    threshold: tf.Tensor
    center: tf.Tensor


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

    The same operation, on the same compiled core, as ``horovod_distq.torch.sparsify``: the
    family is fitted to the finite entries, its quantile at ``ratio`` becomes the threshold, and
    one pass selects exactly the entries ``x`` with ``x != 0 and not abs(x - center) < threshold``
    (compared in float32, or float64 for float64 tensors), so NaN and Inf are always selected and
    zeros never are. ``stages > 1`` refines the threshold by peaks over threshold. A pure function:
    it keeps no history. Runs eagerly and inside ``tf.function``; ``ratio`` may be a tensor, so a
    ratio that changes every step does not retrace.

    Args:
        tensor: float32, float64, float16 or bfloat16 tensor of any shape.
        ratio: target fraction of entries to select, in (0, 1]; a Python number or a scalar tensor.
        distribution: a family of ``horovod_distq.FAMILIES``.
        stages: number of peaks-over-threshold stages (1 = a single fit); None: 3 for ``auto``, else 1.
        sample_size: strided sample size for medians and quartiles (laplace, cauchy).
        **family_params: the family's parameters (``dof`` for ``student_t``).

    Returns:
        A :class:`SparseSelection`.

    Raises:
        ValueError: invalid ratio (given as a number), family or parameter.
        TypeError: a tensor that is not floating point.
        tf.errors.InvalidArgumentError: a ratio tensor outside (0, 1].

    Example:
        >>> g = tf.random.normal([1_000_000])
        >>> sel = sparsify(g, 0.001)
        >>> int(tf.size(sel.indices))  # about 1000
    """
    dof, stages = sparsify_arguments(distribution, ratio, stages, **family_params)
    tensor = tf.convert_to_tensor(tensor)
    if tensor.dtype not in (tf.float32, tf.float64, tf.float16, tf.bfloat16):
        raise TypeError(f"sparsify expects a float32, float64, float16 or bfloat16 tensor, got {tensor.dtype.name}")
    numel = tensor.shape.num_elements()
    index_dtype = tf.int32 if numel is not None and numel < _INT32_INDEX_LIMIT else tf.int64
    indices, values, threshold, center = _ops.distq_sparsify(
        tensor,
        tf.cast(ratio, tf.float64),
        distribution=distribution,
        dof=dof,
        sample_size=int(sample_size),
        stages=stages,
        Tindex=index_dtype,
    )
    compute = tf.float64 if tensor.dtype == tf.float64 else tf.float32
    return SparseSelection(indices, values, tf.cast(threshold, compute), tf.cast(center, compute))


def initial_loop_state(target: float) -> tf.Tensor:
    """The closed-loop state (4 float64) of a tensor not seen before; see ``csrc/core/control.h``."""
    return _ops.distq_initial_loop(tf.constant(target, tf.float64))


def update_loop_state(state: tf.Tensor, selected: tf.Tensor, numel: int, target: float) -> tf.Tensor:
    """The closed-loop state after a fit at ``exp(state[0])`` selected ``selected`` of ``numel`` entries.

    The compiled core's rule, as :class:`horovod_distq.torch.RatioController` runs it for torch.
    """
    return _ops.distq_update_loop(
        state, tf.cast(selected, tf.int64), tf.constant(numel, tf.int64), tf.constant(target, tf.float64)
    )
