"""Encoding and decoding the (index, value) pairs of one tensor (see ``horovod_distq.VALUE_ENCODINGS``).

The TensorFlow counterpart of ``horovod_distq.torch.encoding``: the same bytes on the wire.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

_WIRE_DTYPES = {"float32": tf.float32, "float16": tf.float16, "bfloat16": tf.bfloat16}
_FLOAT16_MAX = 65504.0


class EncodedPairs(NamedTuple):
    """One tensor's pairs as they travel, and the values the receivers will decode.

    Attributes:
        indices: flattened positions (for ``sign``, negative entries as ``~index``).
        values: values in the wire dtype (empty for ``sign``).
        scales: float32 ``[positive scale, negative scale]`` for ``sign``, else empty.
        decoded: float values every receiver reconstructs, for error feedback.
    """

    indices: tf.Tensor
    values: tf.Tensor
    scales: tf.Tensor
    decoded: tf.Tensor

    def segments(self) -> list[tf.Tensor]:
        """The byte vectors that go on the wire, in order."""
        return [as_bytes(t) for t in (self.indices, self.values, self.scales)]


def as_bytes(tensor: tf.Tensor) -> tf.Tensor:
    """A 1-D tensor's bytes as a uint8 vector."""
    return tf.reshape(tf.bitcast(tensor, tf.uint8), [-1])


def from_bytes(data: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """Inverse of :func:`as_bytes`."""
    return tf.bitcast(tf.reshape(data, [-1, dtype.size]), dtype)


def wire_value_dtype(encoding: str, gradient_dtype: tf.DType) -> tf.DType | None:
    """dtype values travel in; None for ``sign`` (no per-pair value)."""
    if encoding == "sign":
        return None
    return gradient_dtype if encoding == "auto" else _WIRE_DTYPES[encoding]


def encode(encoding: str, indices: tf.Tensor, values: tf.Tensor, gradient_dtype: tf.DType) -> EncodedPairs:
    """Encodes selected pairs.

    Args:
        encoding: a name of ``horovod_distq.VALUE_ENCODINGS``.
        indices: selected flattened positions (int32 or int64).
        values: the selected entries.
        gradient_dtype: dtype of the gradient (what ``auto`` sends).

    Returns:
        The :class:`EncodedPairs`.
    """
    if encoding == "sign":
        positive = values > 0
        magnitude = tf.abs(tf.cast(values, tf.float32))
        positive_count = tf.reduce_sum(tf.cast(positive, tf.float32))
        positive_sum = tf.reduce_sum(tf.where(positive, magnitude, 0.0))
        counts = tf.maximum(tf.stack([positive_count, tf.cast(tf.size(values), tf.float32) - positive_count]), 1.0)
        scales = tf.stack([positive_sum, tf.reduce_sum(magnitude) - positive_sum]) / counts
        signed = tf.where(positive, indices, tf.bitwise.invert(indices))
        decoded = tf.where(positive, scales[0], -scales[1])
        return EncodedPairs(signed, tf.zeros([0], values.dtype), scales, decoded)
    wire_dtype = wire_value_dtype(encoding, gradient_dtype)
    if wire_dtype == tf.float16:
        # Clamp finite values into range so the excess stays in the residual; NaN and Inf travel as they are.
        values = tf.where(tf.math.is_finite(values), tf.clip_by_value(values, -_FLOAT16_MAX, _FLOAT16_MAX), values)
    sent = tf.cast(values, wire_dtype)
    decoded = sent if sent.dtype == tf.float64 else tf.cast(sent, tf.float32)
    return EncodedPairs(indices, sent, tf.zeros([0], tf.float32), decoded)


def decode(
    encoding: str, segment: tf.Tensor, count: tf.Tensor, index_dtype: tf.DType, gradient_dtype: tf.DType
) -> tuple[tf.Tensor, tf.Tensor]:
    """Inverse of :func:`encode` for one rank's segment of bytes: (int64 indices, values)."""
    index_end = count * index_dtype.size
    indices = from_bytes(segment[:index_end], index_dtype)
    if encoding == "sign":
        scales = from_bytes(segment[index_end : index_end + 8], tf.float32)
        negative = indices < 0
        return (
            tf.cast(tf.where(negative, tf.bitwise.invert(indices), indices), tf.int64),
            tf.where(negative, -scales[1], scales[0]),
        )
    wire_dtype = wire_value_dtype(encoding, gradient_dtype)
    values = from_bytes(segment[index_end : index_end + count * wire_dtype.size], wire_dtype)
    return tf.cast(indices, tf.int64), values
