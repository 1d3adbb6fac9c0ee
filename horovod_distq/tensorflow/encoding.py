"""Encoding and decoding the (index, value) pairs of one tensor, as ``horovod_distq.VALUE_ENCODINGS`` specifies.

The same bytes on the wire as ``horovod_distq.torch.encoding``, in graph-friendly operations: counts
may be tensors, so it works eagerly and inside ``tf.function`` alike.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from horovod_distq.compressor import EncodedPairs
from horovod_distq.encodings import value_encoding


def tf_dtype(name: str) -> tf.DType:
    """The TensorFlow dtype of a dtype name ("float32", ...)."""
    return tf.as_dtype(name)


def is_floating_array(value: object) -> bool:
    """Whether ``value`` is a floating-point NumPy array, tensor or variable (residuals, loop states)."""
    return isinstance(value, (np.ndarray, tf.Tensor, tf.Variable)) and tf.as_dtype(value.dtype).is_floating


def as_bytes(tensor: tf.Tensor) -> tf.Tensor:
    """A 1-D tensor's bytes as a uint8 vector."""
    return tf.reshape(tf.bitcast(tensor, tf.uint8), [-1])


def from_bytes(data: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """Inverse of :func:`as_bytes`."""
    return tf.bitcast(tf.reshape(data, [-1, dtype.size]), dtype)


def encode(encoding: str, indices: tf.Tensor, values: tf.Tensor, gradient_dtype: tf.DType) -> EncodedPairs:
    """Encodes a selection's pairs as ``horovod_distq.VALUE_ENCODINGS[encoding]`` specifies, for a
    gradient of ``gradient_dtype`` (what ``auto`` sends); returns :class:`horovod_distq.compressor.EncodedPairs`.

    Example:
        >>> encode("float16", tf.constant([3]), tf.constant([1e6]), tf.float32).decoded
        <tf.Tensor: shape=(1,), dtype=float32, numpy=array([65504.], dtype=float32)>
    """
    spec = value_encoding(encoding)
    if spec.sign_in_index:
        positive = values > 0
        magnitude = tf.cast(tf.abs(values), tf.float32)
        positive_count = tf.reduce_sum(tf.cast(positive, tf.float32))
        positive_sum = tf.reduce_sum(tf.where(positive, magnitude, 0.0))
        counts = tf.maximum(tf.stack([positive_count, tf.cast(tf.size(values), tf.float32) - positive_count]), 1.0)
        scales = tf.stack([positive_sum, tf.reduce_sum(magnitude) - positive_sum]) / counts
        signed = tf.where(positive, indices, tf.bitwise.invert(indices))
        decoded = tf.where(positive, scales[0], -scales[1])
        return EncodedPairs(signed, tf.zeros([0], values.dtype), scales, decoded)
    if spec.clamp is not None:
        # Clamp finite values into range so the excess stays in the residual; NaN and Inf travel as they are.
        values = tf.where(tf.math.is_finite(values), tf.clip_by_value(values, -spec.clamp, spec.clamp), values)
    sent = tf.cast(values, tf_dtype(spec.value_dtype(gradient_dtype.name)))
    decoded = sent if sent.dtype == tf.float64 else tf.cast(sent, tf.float32)
    return EncodedPairs(indices, sent, tf.zeros([0], tf.float32), decoded)


def decode_segments(
    encoding: str, index_dtype: str, gradient_dtype: str, payload: tf.Tensor, starts: tf.Tensor, counts: tf.Tensor,
    pair_segments: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Inverse of :func:`encode` for many segments of one kind at once, as ``horovod_distq.wire``
    lays a segment out (indices, then values or the sign encoding's scales).

    Args:
        encoding, index_dtype, gradient_dtype: what the segments' tensors share.
        payload: the gathered bytes (uint8).
        starts: int64, where each segment's first byte is.
        counts: int64, each segment's pairs.
        pair_segments: the segment of each pair, in order.

    Returns:
        Every segment's pairs, concatenated in the segments' order: int64 indices and values in
        the wire dtype (float32 for the sign encoding).
    """
    spec = value_encoding(encoding)
    index_type = tf_dtype(index_dtype)
    index_end = starts + counts * index_type.size
    indices = from_bytes(_byte_ranges(payload, starts, index_end), index_type)
    if spec.sign_in_index:
        scales = tf.reshape(from_bytes(_byte_ranges(payload, index_end, index_end + spec.scale_bytes), tf.float32),
                            [-1, 2])
        pair_scales = tf.gather(scales, pair_segments)
        negative = indices < 0
        values = tf.where(negative, -pair_scales[:, 1], pair_scales[:, 0])
        return tf.cast(tf.where(negative, tf.bitwise.invert(indices), indices), tf.int64), values
    wire_dtype = tf_dtype(spec.value_dtype(gradient_dtype))
    values = from_bytes(_byte_ranges(payload, index_end, index_end + counts * wire_dtype.size), wire_dtype)
    return tf.cast(indices, tf.int64), values


def _byte_ranges(payload: tf.Tensor, starts: tf.Tensor, ends: tf.Tensor) -> tf.Tensor:
    """The payload's bytes [starts[i], ends[i]) for every i, concatenated."""
    return tf.gather(payload, tf.ragged.range(starts, ends).flat_values)
