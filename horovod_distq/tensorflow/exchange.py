"""Allgathers of the pairs of compressed gradients (format: :mod:`horovod_distq.wire`).

Horovod's tape compresses each gradient inside its own ``tf.cond``, so under TensorFlow each
compressed gradient travels in its own allgather, run by its ``decompress()``: after the
placeholder's allreduce, since TensorFlow runs collectives in program order, so ranks that disagree
on compressing a gradient fail there instead of waiting in an allgather only some of them join.
Graph-friendly: counts stay tensors, the gathered buffer is parsed with dynamic offsets, and the
header check is a TensorFlow assertion, so it works eagerly and inside ``tf.function`` alike.
"""

from __future__ import annotations

import horovod.tensorflow as hvd
import tensorflow as tf

from horovod_distq import wire
from horovod_distq.compressor import QueuedTensor, SparseContext
from horovod_distq.tensorflow.encoding import as_bytes, decode, from_bytes


class GradientExchange:
    """Exchanges each compressed gradient's pairs in one allgather of its own.

    Args:
        process_set: the Horovod process set the tape reduces over.

    Example:
        >>> exchange.submit(queued)                 # in compress(): nothing to queue
        >>> indices, values = exchange.collect(ctx)  # in decompress(): every rank's pairs
    """

    # Every gradient's buffer carries a header of its own.
    tensor_header_bytes = wire.header_bytes(1)

    def __init__(self, process_set: hvd.ProcessSet = hvd.global_process_set) -> None:
        self.process_set = process_set

    @staticmethod
    def round_header_bytes(tensors: int) -> int:
        """No header beyond each gradient's own."""
        return 0

    def submit(self, queued: QueuedTensor) -> None:
        """Nothing to do: the pairs travel in :meth:`collect`, inside the gradient's own ``tf.cond``."""

    def collect(self, ctx: SparseContext) -> tuple[tf.Tensor, tf.Tensor]:
        """All ranks' pairs for one gradient: int64 indices and values (concatenated over ranks)."""
        [pairs] = exchange([ctx.queued], self.process_set, ctx.op_name and ctx.op_name + "_pairs")
        return pairs


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
    layouts = [q.layout for q in queued]
    names = [layout.name for layout in layouts]
    checksum = wire.layout_checksum(layouts)
    counts = [tf.size(q.pairs.indices, out_type=tf.int64) for q in queued]
    header = tf.concat([tf.constant([len(queued), checksum], tf.int64), tf.stack(counts)], axis=0)
    segments = [as_bytes(header)] + [as_bytes(t) for q in queued for t in q.pairs.wire_parts()]
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
            for i, layout in enumerate(layouts):
                count = their_header[wire.HEADER_FIELDS + i]
                size = layout.segment_bytes(count)
                segment = gathered[offset : offset + size]
                pieces[i].append(decode(layout.encoding, segment, count, layout.index_dtype, layout.gradient_dtype))
                offset += size
    return [(tf.concat([p[0] for p in parts], 0), tf.concat([p[1] for p in parts], 0)) for parts in pieces]
