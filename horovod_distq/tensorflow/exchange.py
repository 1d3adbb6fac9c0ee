"""One allgather for the pairs of a list of compressed tensors (format: :mod:`horovod_distq.wire`).

Graph-friendly: counts stay tensors, the gathered buffer is parsed with dynamic offsets, and the
header check is a TensorFlow assertion, so it works eagerly and inside ``tf.function`` alike.
"""

from __future__ import annotations

from typing import NamedTuple

import horovod.tensorflow as hvd
import tensorflow as tf

from horovod_distq import wire
from horovod_distq.tensorflow.encoding import EncodedPairs, as_bytes, decode, from_bytes


class QueuedTensor(NamedTuple):
    """What a rank sends for one tensor and what every receiver needs to parse it."""

    name: str
    numel: int
    encoding: str
    gradient_dtype: tf.DType
    pairs: EncodedPairs

    def layout(self) -> str:
        return wire.tensor_layout(
            self.name, self.numel, self.encoding, self.pairs.indices.dtype.name, self.gradient_dtype.name
        )

    def segment_bytes(self, count: tf.Tensor) -> tf.Tensor:
        """Bytes of one rank's segment of ``count`` pairs, as an int64 tensor."""
        fixed = wire.segment_bytes(self.encoding, 0, 0, 0)
        per_pair = wire.segment_bytes(self.encoding, 1, self.pairs.indices.dtype.size, self.gradient_dtype.size) - fixed
        return count * per_pair + fixed


def exchange(
    queued: list[QueuedTensor], process_set: hvd.ProcessSet, op_name: str | None = None
) -> list[tuple[tf.Tensor, tf.Tensor]]:
    """Sends this rank's pairs of every queued tensor in one allgather and parses every rank's.

    Args:
        queued: the tensors of the round, in the same order on every rank.
        process_set: the Horovod process set to gather over.
        op_name: a name for the buffer (and so for Horovod's allgather) unique within the graph;
            None in eager mode.

    Returns:
        Per queued tensor, every rank's pairs concatenated: (int64 indices, values in the wire dtype).

    Raises:
        tf.errors.InvalidArgumentError: on every rank, when ranks queued different tensors or encodings.
    """
    names = [q.name for q in queued]
    checksum = wire.layout_checksum(q.layout() for q in queued)
    counts = [tf.size(q.pairs.indices, out_type=tf.int64) for q in queued]
    header = tf.concat([tf.constant([len(queued), checksum], tf.int64), tf.stack(counts)], axis=0)
    segments = [as_bytes(header)] + [s for q in queued for s in q.pairs.segments()]
    buffer = tf.concat(segments, axis=0, name=op_name)
    gathered = hvd.allgather(buffer, process_set=process_set)
    header_bytes = wire.header_bytes(len(queued))
    pieces: list[list[tuple[tf.Tensor, tf.Tensor]]] = [[] for _ in queued]
    offset = tf.constant(0, tf.int64)
    for rank in range(process_set.size()):
        their_header = from_bytes(gathered[offset : offset + header_bytes], tf.int64)
        check = tf.debugging.assert_equal(
            their_header[: wire.HEADER_FIELDS],
            tf.constant([len(queued), checksum], tf.int64),
            message=wire.mismatch_message(rank, names),
        )
        # Parse a rank's segments only once its header has passed (eagerly, check is None).
        with tf.control_dependencies([check] if check is not None else []):
            offset += header_bytes
            for i, q in enumerate(queued):
                count = their_header[wire.HEADER_FIELDS + i]
                size = q.segment_bytes(count)
                segment = gathered[offset : offset + size]
                pieces[i].append(decode(q.encoding, segment, count, q.pairs.indices.dtype, q.gradient_dtype))
                offset += size
    return [(tf.concat([p[0] for p in parts], 0), tf.concat([p[1] for p in parts], 0)) for parts in pieces]
