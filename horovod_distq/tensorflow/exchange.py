"""Grouped allgathers of the pairs of compressed gradients (format and checks: :mod:`horovod_distq.wire`).

Horovod's tape compresses each gradient inside its own ``tf.cond``, so under Horovod's tape each
compressed gradient travels in its own grouped allgather (its header and its payload), run by its
``decompress()``. Where the caller reduces a whole step at once (the Keras optimizer of
:mod:`horovod_distq.tensorflow.keras`), :meth:`GradientExchange.one_round` sends every compressed
gradient of the step in one grouped allgather instead. Either way the pairs travel after the
placeholders' allreduce, since TensorFlow runs collectives in program order, so ranks that
disagree on compressing a gradient fail there instead of waiting in an allgather only some of
them join. Graph-friendly: counts stay tensors, the gathered payload is parsed with dynamic
offsets, and the checks are TensorFlow assertions that every parsing step depends on, so it
works eagerly and inside ``tf.function`` and ``tf.cond`` alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf

from horovod_distq import wire
from horovod_distq.compressor import EncodedPairs, QueuedTensor, SparseContext
from horovod_distq.tensorflow.encoding import as_bytes, decode, from_bytes


class GradientExchange:
    """Exchanges compressed gradients' pairs: each in a grouped allgather of its own, or all of a
    step's in one (:meth:`one_round`).

    Args:
        process_set: the Horovod process set the tape reduces over.

    Example:
        >>> exchange.submit(queued)                 # in compress()
        >>> indices, values = exchange.collect(ctx)  # in decompress(): every rank's pairs
    """

    def __init__(self, process_set: hvd.ProcessSet = hvd.global_process_set) -> None:
        self.process_set = process_set
        # Queued tensors by name while a round is open (None: each gradient travels alone).
        self._round: dict[str, QueuedTensor] | None = None
        self._results: dict[str, tuple[tf.Tensor, tf.Tensor]] = {}
        # How the last step travelled, for the bytes accounting of stats.
        self._last_step_in_one_round = False

    @property
    def tensor_header_bytes(self) -> int:
        """Header bytes per compressed gradient: each gradient's own, or none within a round."""
        return 0 if self._last_step_in_one_round else wire.header_bytes(1)

    def round_header_bytes(self, tensors: int) -> int:
        """Header bytes of a step's round of ``tensors`` gradients (0 without a round)."""
        return wire.header_bytes(tensors) if self._last_step_in_one_round and tensors else 0

    @contextmanager
    def one_round(self) -> Iterator[None]:
        """Within the block, the gradients compressed travel together: the first :meth:`collect`
        sends every one compressed so far in one grouped allgather, in name order."""
        self._round, self._results = {}, {}
        self._last_step_in_one_round = True
        try:
            yield
        finally:
            self._round, self._results = None, {}

    def submit(self, queued: QueuedTensor) -> None:
        """Queues the pairs of one gradient when a round is open; else they travel in :meth:`collect`."""
        if self._round is None:
            self._last_step_in_one_round = False
            return
        name = queued.layout.name
        if name in self._round or name in self._results:
            raise RuntimeError(f"DistQ: tensor {name!r} compressed twice in one round")
        self._round[name] = queued

    def queued_tensors(self) -> int:
        """Tensors of the open round compressed and not yet collected (0 without a round)."""
        return len(self._round) + len(self._results) if self._round is not None else 0

    def discard(self) -> None:
        """Forgets the open round's pairs not yet collected (an interrupted step)."""
        if self._round is not None:
            self._round.clear()
        self._results.clear()

    def gather_bytes(self, payload: bytes) -> bytes:
        """Every rank's ``payload`` concatenated in rank order (one eager allgather, for state_dict)."""
        with tf.init_scope():
            data = tf.constant(np.frombuffer(payload, np.uint8))
            return hvd.allgather(data, process_set=self.process_set).numpy().tobytes()

    def collect(self, ctx: SparseContext) -> tuple[tf.Tensor, tf.Tensor]:
        """All ranks' pairs for one gradient: int64 indices and values (concatenated over ranks)."""
        if self._round is None:
            [pairs] = exchange([ctx.queued], self.process_set, ctx.op_name and ctx.op_name + "_pairs")
            return pairs
        name = ctx.queued.layout.name
        if name not in self._results:
            names = sorted(self._round)
            queued = [self._round.pop(n) for n in names]
            # One fixed name: every rank traces the same round, whatever its gradients are called.
            results = exchange(queued, self.process_set, ctx.op_name and "DistQ_round")
            self._results.update(zip(names, results))
        return self._results.pop(name)


def exchange(
    queued: list[QueuedTensor], process_set: hvd.ProcessSet, op_name: str | None = None
) -> list[tuple[tf.Tensor, tf.Tensor]]:
    """Sends this rank's pairs of every queued tensor in one grouped allgather and parses every rank's.

    Args:
        queued: the tensors of the round, in the same order on every rank.
        process_set: the Horovod process set to gather over.
        op_name: a name for the header and payload (and so for Horovod's allgather) unique within
            the graph; None in eager mode.

    Returns:
        Per queued tensor, every rank's pairs concatenated: (int64 indices, values in the wire dtype).

    Raises:
        tf.errors.InvalidArgumentError: on every rank, when ranks queued different tensors or
            encodings, or a rank's data breaks the exchange format (see :func:`parse_round`).
    """
    round_layout = wire.RoundLayout(tuple(q.layout for q in queued))
    header, payload = pack_round(round_layout, [q.pairs for q in queued], op_name)
    gathered_header, gathered_payload = hvd.grouped_allgather([header, payload], process_set=process_set)
    return parse_round(round_layout, process_set.size(), gathered_header, gathered_payload)


def pack_round(
    round_layout: wire.RoundLayout, pairs: Sequence[EncodedPairs], op_name: str | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """This rank's header and payload for one round.

    Args:
        round_layout: the round's tensors, in the order they travel.
        pairs: this rank's encoded pairs of each of them, in the same order.
        op_name: a name the two tensors' names start with (Horovod names its allgather after them), or None.

    Returns:
        ``(header, payload)``: uint8 vectors (Horovod's grouped allgather takes one dtype), as
        :mod:`horovod_distq.wire` lays them out.
    """
    counts = [tf.size(p.indices, out_type=tf.int64) for p in pairs]
    fields = tf.stack([tf.cast(field, tf.int64) for field in round_layout.header(counts)])
    header = tf.identity(as_bytes(fields), name=op_name and op_name + "_header")
    parts = [tf.zeros([0], tf.uint8)] + [as_bytes(t) for p in pairs for t in p.wire_parts()]
    return header, tf.concat(parts, axis=0, name=op_name and op_name + "_payload")


@tf.autograph.experimental.do_not_convert  # plain Python loops over ranks and tensors, whatever calls it
def parse_round(
    round_layout: wire.RoundLayout, ranks: int, gathered_header: tf.Tensor, gathered_payload: tf.Tensor
) -> list[tuple[tf.Tensor, tf.Tensor]]:
    """Every rank's pairs of each tensor of a round, from the gathered headers and payloads: the
    arguments and result of ``horovod_distq.torch.exchange.parse_round``, as TensorFlow tensors.

    Raises:
        tf.errors.InvalidArgumentError: with the message of :mod:`horovod_distq.wire` of the first
            of :meth:`horovod_distq.wire.RoundLayout.checks` that fails, or of an index outside its
            tensor (eagerly at once, in a graph when the result is computed); every rank gathers
            the same bytes, so every rank raises it.
    """
    headers = _header_fields(round_layout, ranks, gathered_header)
    header_length = tf.size(gathered_header, out_type=tf.int64)
    payload_length = tf.size(gathered_payload, out_type=tf.int64)
    checked = _assert_all(round_layout.checks(headers, header_length, payload_length), [])
    # Created under the checks' assertion, so no slice or bitcast runs on data that failed one.
    with tf.control_dependencies(checked):
        pieces: list[list[tuple[tf.Tensor, tf.Tensor]]] = [[] for _ in round_layout.tensors]
        for spans in round_layout.segments(headers):
            for layout, piece, (start, count) in zip(round_layout.tensors, pieces, spans):
                segment = gathered_payload[start : start + layout.segment_bytes(count)]
                piece.append(decode(layout.encoding, segment, count, layout.index_dtype, layout.gradient_dtype))
        # A flipped byte must not reach scatter_nd (an error on the CPU, silently dropped on a GPU).
        index_checks = (
            (tf.reduce_all((piece[rank][0] >= 0) & (piece[rank][0] < layout.numel)), wire.index_message(rank, layout))
            for rank in range(ranks)
            for layout, piece in zip(round_layout.tensors, pieces)
        )
        checked = _assert_all(index_checks, checked)
    with tf.control_dependencies(checked):
        return [(tf.concat([i for i, _ in piece], 0), tf.concat([v for _, v in piece], 0)) for piece in pieces]


def _header_fields(round_layout: wire.RoundLayout, ranks: int, gathered_header: tf.Tensor) -> list[list[tf.Tensor]]:
    # Exactly ``ranks`` headers' worth of bytes, cut or zero-padded, so that every field can be read
    # before the checks tell whether it arrived; a Python list of scalars for the checks' loops.
    wanted = ranks * round_layout.header_bytes
    arrived = gathered_header[:wanted]
    fitted = tf.pad(arrived, [[0, wanted - tf.size(arrived)]])
    rows = tf.reshape(from_bytes(fitted, tf.int64), [ranks, round_layout.header_items])
    return [tf.unstack(row, num=round_layout.header_items) for row in tf.unstack(rows, num=ranks)]


def _assert_all(checks: Iterable[tuple[Any, str]], after: list[Any]) -> list[Any]:
    # One assertion for many checks, reporting the first that fails (the same on every rank, eagerly
    # as in a graph): one assertion per check would grow the graph by several per rank and gradient.
    # Returns the control inputs for what may only run once the checks passed.
    conditions, messages = zip(*checks)
    passed = tf.stack([tf.cast(condition, tf.bool) for condition in conditions])
    # The first failing check's position (the last position when none fails: a valid index to gather).
    first_failure = tf.reduce_min(tf.where(passed, len(messages) - 1, tf.range(len(messages))))
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(passed)):
            raise tf.errors.InvalidArgumentError(None, None, messages[int(first_failure)])
        return []
    with tf.control_dependencies(after):
        return [tf.debugging.Assert(tf.reduce_all(passed), [tf.gather(messages, first_failure)])]
