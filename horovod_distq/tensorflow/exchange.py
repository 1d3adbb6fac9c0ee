"""Grouped allgathers of the pairs of compressed gradients (format and checks: :mod:`horovod_distq.wire`).

Horovod's tape compresses each gradient inside its own ``tf.cond``, so under Horovod's tape each
compressed gradient travels in its own grouped allgather (its header and its payload), run by its
``decompress()``. Where the caller reduces a whole step at once (the Keras optimizer of
:mod:`horovod_distq.tensorflow.keras`), :meth:`AllgatherExchange.one_round` sends every compressed
gradient of the step in one grouped allgather instead. Either way the pairs travel after the
placeholders' allreduce (``DistQ.decompress`` and the reducer make the allgather depend on it:
TensorFlow does not order Horovod's collectives by itself), so ranks that disagree on
compressing a gradient fail there instead of waiting in an allgather only some of them join.
Graph-friendly: counts stay tensors, the gathered payload is parsed with dynamic offsets, and the
checks, :meth:`horovod_distq.wire.RoundLayout.checks` built into the graph as they are stated there,
are one TensorFlow assertion that every parsing step depends on (and one for the decoded indices),
so it works eagerly and inside ``tf.function`` and ``tf.cond`` alike. The assertion's messages are
one template per column of checks, the failing rank written in when it fails: a traced step's
strings do not grow with the ranks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf

from horovod_distq import wire
from horovod_distq.compressor import EncodedPairs, QueuedTensor, SparseContext
from horovod_distq.encodings import value_encoding
from horovod_distq.tensorflow import world
from horovod_distq.tensorflow.encoding import as_bytes, decode_segments, from_bytes


class AllgatherExchange:
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
    return parse_round(round_layout, world.ranks(process_set), gathered_header, gathered_payload)


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
    counts = tf.stack([tf.size(p.indices, out_type=tf.int64) for p in pairs]) if pairs else tf.zeros([0], tf.int64)
    # round_layout.header(counts), with the payload's size summed as one vector operation.
    payload_bytes = tf.reduce_sum(round_layout.segment_sizes(counts, _GraphArrays))
    fixed = tf.constant([len(round_layout.tensors), round_layout.checksum], tf.int64)
    fields = tf.concat([fixed, payload_bytes[None], counts], axis=0)
    header = tf.identity(as_bytes(fields), name=op_name and op_name + "_header")
    # Parts known to be empty when traced (the scales of value encodings) add nothing to the graph.
    parts = [tf.zeros([0], tf.uint8)] + [
        as_bytes(t) for p in pairs for t in p.wire_parts() if t.shape.num_elements() != 0
    ]
    return header, tf.concat(parts, axis=0, name=op_name and op_name + "_payload")


@tf.autograph.experimental.do_not_convert  # Python loops over the round's few tensor kinds, whatever calls it
def parse_round(
    round_layout: wire.RoundLayout, ranks: int | tf.Tensor, gathered_header: tf.Tensor, gathered_payload: tf.Tensor
) -> list[tuple[tf.Tensor, tf.Tensor]]:
    """Every rank's pairs of each tensor of a round, from the gathered headers and payloads: the
    arguments and result of ``horovod_distq.torch.exchange.parse_round``, as TensorFlow tensors
    (``ranks`` may be an int64 scalar read when the step runs: :mod:`horovod_distq.tensorflow.world`).

    Vectorised over ranks and tensors, so that a traced step's graph does not grow with the ranks
    (nor its operations with the tensors): the table of
    :meth:`horovod_distq.wire.RoundLayout.checks`, evaluated in TensorFlow ops, as one assertion;
    then one gather of the indices and one of the values per kind of tensor (index dtype and
    encoding; a round has one kind unless its gradients' dtypes or sizes differ), split by tensor.

    Raises:
        tf.errors.InvalidArgumentError: with the message of :mod:`horovod_distq.wire` of the first
            of :meth:`horovod_distq.wire.RoundLayout.checks` that fails, or of an index outside its
            tensor (eagerly at once, in a graph when the result is computed); every rank gathers
            the same bytes, so every rank raises it.
    """
    headers = _header_table(round_layout, ranks, gathered_header)
    header_length = tf.size(gathered_header, out_type=tf.int64)
    payload_length = tf.size(gathered_payload, out_type=tf.int64)
    checks = round_layout.checks(headers, ranks, header_length, payload_length, _GraphArrays)
    checked = _assert_table(_stacked(checks), checks.messages, after=[])
    # Created under the checks' assertion, so no gather or bitcast runs on data that failed one.
    with tf.control_dependencies(checked):
        counts = headers[:, wire.HEADER_FIELDS :]
        flat_bytes = tf.reshape(round_layout.segment_sizes(counts, _GraphArrays), [-1])
        starts = tf.reshape(tf.cumsum(flat_bytes, exclusive=True), [ranks, -1])
        decoded = []
        index_failures = []
        for positions in _tensor_kinds(round_layout).values():
            layouts = [round_layout.tensors[p] for p in positions]
            kind_counts = tf.reshape(tf.gather(counts, positions, axis=1), [-1])  # rank-major
            kind_starts = tf.reshape(tf.gather(starts, positions, axis=1), [-1])
            # Each pair's segment (rank-major: rank, then tensor of the kind) and tensor among ``layouts``.
            segment = tf.searchsorted(tf.cumsum(kind_counts), tf.range(tf.reduce_sum(kind_counts)), side="right")
            first = layouts[0]
            indices, values = decode_segments(first.encoding, first.index_dtype, first.gradient_dtype,
                                              gathered_payload, kind_starts, kind_counts, segment)
            tensor = segment % len(layouts) if len(layouts) > 1 else None
            # A flipped byte must not reach scatter_nd (an error on the CPU, silently dropped on a GPU).
            numels = tf.constant([layout.numel for layout in layouts], tf.int64)
            outside = (indices < 0) | (indices >= (numels[0] if tensor is None else tf.gather(numels, tensor)))
            failed = tf.math.unsorted_segment_max(tf.cast(outside, tf.int32), segment, tf.size(kind_counts)) > 0
            index_failures.append((positions, tf.reshape(failed, [ranks, len(positions)])))
            decoded.append((positions, indices, values, tensor))
        failures = _scatter_columns(index_failures, ranks, len(round_layout.tensors))
        templates = wire.MessageTable([wire.index_message(wire.RANK, layout) for layout in round_layout.tensors], [])
        checked = _assert_table(tf.reshape(~failures, [-1]), templates, after=checked)
    # Split by tensor under the index checks' assertion: no pair leaves before every index passed.
    pairs: list[Any] = [None] * len(round_layout.tensors)
    with tf.control_dependencies(checked):
        for positions, indices, values, tensor in decoded:
            if tensor is None:  # a kind of one tensor: its pairs are all the kind's
                [position] = positions
                pairs[position] = (tf.identity(indices), tf.identity(values))
                continue
            split = zip(tf.dynamic_partition(indices, tensor, len(positions)),
                        tf.dynamic_partition(values, tensor, len(positions)))
            for position, tensor_pairs in zip(positions, split):
                pairs[position] = tensor_pairs
    return pairs


def _header_table(round_layout: wire.RoundLayout, ranks: int | tf.Tensor, gathered_header: tf.Tensor) -> tf.Tensor:
    # Exactly ``ranks`` headers' worth of bytes, cut or zero-padded, so that every field can be read
    # before the checks tell whether it arrived: int64 [ranks, header items].
    wanted = ranks * round_layout.header_bytes
    arrived = gathered_header[:wanted]
    fitted = tf.pad(arrived, [[0, wanted - tf.size(arrived, out_type=tf.int64)]])
    return tf.reshape(from_bytes(fitted, tf.int64), [ranks, round_layout.header_items])


class _GraphArrays:
    """:class:`horovod_distq.wire.ArrayOps` in TensorFlow ops: how this frontend builds the checks,
    eagerly or into a traced graph (where the number of ranks may be a tensor)."""

    @staticmethod
    def int64(values: Sequence[int]) -> tf.Tensor:
        return tf.constant(list(values), tf.int64)

    @staticmethod
    def arange(length: int | tf.Tensor) -> tf.Tensor:
        return tf.range(length, dtype=tf.int64)

    @staticmethod
    def sum(array: tf.Tensor, axis: int) -> tf.Tensor:
        return tf.reduce_sum(array, axis)

    @staticmethod
    def cumsum(array: tf.Tensor, axis: int) -> tf.Tensor:
        return tf.cumsum(array, axis)


def _stacked(checks: wire.CheckTable) -> tf.Tensor:
    """The table's conditions as one bool vector, in the order the checks run (see ``CheckTable``)."""
    per_rank = tf.concat([check.passed for check in checks.per_rank], axis=1)
    return tf.concat([tf.reshape(per_rank, [-1]), tf.stack([check.passed for check in checks.totals])], axis=0)


def _tensor_kinds(round_layout: wire.RoundLayout) -> dict[tuple[str, str, str | None], list[int]]:
    """The round's tensors' positions, by what decoding them takes: index dtype, encoding, wire dtype."""
    kinds: dict[tuple[str, str, str | None], list[int]] = {}
    for position, layout in enumerate(round_layout.tensors):
        spec = value_encoding(layout.encoding)
        wire_dtype = spec.value_dtype(layout.gradient_dtype)
        key = (layout.index_dtype, "sign" if spec.sign_in_index else "values", wire_dtype)
        kinds.setdefault(key, []).append(position)
    return kinds


def _scatter_columns(columns: list[tuple[list[int], tf.Tensor]], ranks: int, tensors: int) -> tf.Tensor:
    """A [ranks, tensors] table from per-kind tables whose columns are the given tensor positions."""
    order = [position for positions, _ in columns for position in positions]
    joined = tf.concat([table for _, table in columns], axis=1)
    return tf.gather(joined, [order.index(position) for position in range(tensors)], axis=1)


def _assert_table(passed: tf.Tensor, messages: wire.MessageTable, after: list[Any]) -> list[Any]:
    """One assertion for a table of checks (a bool vector: ``messages.per_rank`` columns per rank,
    then ``messages.trailing``), reporting the first that fails (the same on every rank, eagerly
    as in a graph). Returns the control inputs for what may only run once the checks passed."""
    count = tf.size(passed)
    first_failure = tf.reduce_min(tf.where(passed, count - 1, tf.range(count)))
    columns = len(messages.per_rank)
    per_rank_checks = count - len(messages.trailing)
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(passed)):
            message = messages.at(int(first_failure), int(per_rank_checks) // columns)
            raise tf.errors.InvalidArgumentError(None, None, message)
        return []
    # messages.at(first_failure), in the graph: the template, with the rank written in.
    in_table = first_failure < per_rank_checks
    template = tf.gather(messages.per_rank + messages.trailing,
                         tf.where(in_table, first_failure % columns, columns + first_failure - per_rank_checks))
    rank = tf.strings.as_string(tf.where(in_table, first_failure // columns, per_rank_checks // columns - 1))
    message = tf.strings.regex_replace(template, wire.RANK_TEXT, tf.strings.join(["rank ", rank]))
    with tf.control_dependencies(after):
        return [tf.debugging.Assert(tf.reduce_all(passed), [message])]
