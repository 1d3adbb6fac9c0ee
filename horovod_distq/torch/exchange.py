"""One grouped allgather per step for the pairs of every compressed tensor.

``compress()`` only queues a tensor's encoded pairs (on a GPU, its selection, whose count is still on
the device). The first ``decompress()`` of the step (Horovod calls them after every ``compress()`` of
the step) reads the step's counts in one copy, packs the queue into this rank's header and
payload (format and checks: :mod:`horovod_distq.wire`), gathers both in one Horovod grouped
allgather, so the number of collective calls per step does not grow with the number of layers, and
parses every rank's pairs with :func:`parse_round`, which fails on every rank alike when any rank's
data breaks the format. Tensors are packed in name order, so ranks may compress them in different orders.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import horovod.torch as hvd
import torch

from horovod_distq import wire
from horovod_distq.compressor import EncodedPairs, QueuedTensor, SparseContext
from horovod_distq.torch import ops
from horovod_distq.torch.encoding import decode


@dataclass(frozen=True)
class RoundStats:
    """One exchange round on this rank.

    Attributes:
        tensors: compressed tensors in the round.
        bytes_sent: size of this rank's header and payload.
        bytes_received: size of the other ranks' headers and payloads together.
    """

    tensors: int
    bytes_sent: int
    bytes_received: int


class RoundQueue:
    """The pairs a step submitted, and every rank's pairs once a round has gathered them.

    What the Horovod exchange (:class:`AllgatherExchange`) and the DDP hook's
    (``horovod_distq.torch.ddp_exchange``) share; they differ in the collectives that gather a round.
    """

    # One header per round, not per tensor (see bytes accounting in horovod_distq.compressor).
    tensor_header_bytes = 0

    __slots__ = ("_pending", "_results", "last_round")

    def __init__(self) -> None:
        self._pending: dict[str, QueuedTensor] = {}
        self._results: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.last_round: RoundStats | None = None

    def submit(self, queued: QueuedTensor) -> None:
        """Queues one tensor's pairs for the step's round."""
        name = queued.layout.name
        if name in self._pending or name in self._results:
            raise RuntimeError(f"DistQ: tensor {name!r} compressed twice before it was decompressed")
        self._pending[name] = queued

    def queued_tensors(self) -> int:
        """Tensors of this step compressed and not yet decompressed."""
        return len(self._pending) + len(self._results)

    def discard(self) -> None:
        """Forgets the step's pairs not yet collected (an interrupted step)."""
        self._pending.clear()
        self._results.clear()

    def _take_queued(self) -> tuple[list[str], list[QueuedTensor]]:
        """Empties the queue: its tensors' names in name order and their pairs, the pending ones'
        counts read in one copy (:func:`horovod_distq.torch.ops.read_counts`)."""
        names = sorted(self._pending)
        queued = [self._pending[n] for n in names]
        self._pending = {}
        pending = [q for q in queued if q.pending]
        for q, selected in zip(pending, ops.read_counts([q.count for q in pending])):
            q.resolve(selected)
        return names, queued

    def _take_round(self) -> PackedRound:
        """Empties the queue into one round: its tensors in name order, this rank's header and payload."""
        names, queued = self._take_queued()
        layout = wire.RoundLayout(tuple(q.layout for q in queued))
        return PackedRound(names, layout, *pack_round(layout, [q.pairs for q in queued]))

    def _store_round(
        self, packed: PackedRound, ranks: int, gathered_header: torch.Tensor, gathered_payload: torch.Tensor
    ) -> None:
        """Parses a gathered round (every rank's headers and payloads) and keeps each tensor's pairs."""
        results = parse_round(packed.layout, ranks, gathered_header, gathered_payload)
        self._results.update(zip(packed.names, results))
        sent = packed.header.numel() + packed.payload.numel()
        received = gathered_header.numel() + gathered_payload.numel() - sent
        self.last_round = RoundStats(len(packed.names), sent, received)


class PackedRound(NamedTuple):
    """One round as this rank sends it.

    Attributes:
        names: the round's tensor names, in the order they travel.
        layout: their layouts.
        header: this rank's header (uint8).
        payload: this rank's payload (uint8).
    """

    names: list[str]
    layout: wire.RoundLayout
    header: torch.Tensor
    payload: torch.Tensor


class AllgatherExchange(RoundQueue):
    """Queues each tensor's pairs and exchanges all of them in one Horovod grouped allgather.

    Args:
        process_set: the Horovod process set the optimizer reduces over.

    Example:
        >>> exchange.submit(queued)                 # in compress()
        >>> indices, values = exchange.collect(ctx)  # in decompress(): every rank's pairs
    """

    __slots__ = ("process_set",)

    def __init__(self, process_set: hvd.ProcessSet = hvd.global_process_set) -> None:
        super().__init__()
        self.process_set = process_set

    @staticmethod
    def round_header_bytes(tensors: int) -> int:
        """Bytes of this rank's header in a step that compressed ``tensors`` tensors."""
        return wire.header_bytes(tensors) if tensors else 0

    def gather_bytes(self, payload: bytes) -> bytes:
        """Every rank's ``payload`` concatenated in rank order (one allgather, for state_dict)."""
        gathered = hvd.allgather(
            torch.frombuffer(bytearray(payload), dtype=torch.uint8), name="distq.state", process_set=self.process_set
        )
        return gathered.numpy().tobytes()

    def collect(self, ctx: SparseContext) -> tuple[torch.Tensor, torch.Tensor]:
        """All ranks' pairs for one tensor: int64 indices and values (concatenated over ranks).

        Raises:
            horovod_distq.wire.DistQExchangeError: on every rank, when ranks compressed different
                tensors or encodings, or a rank's data breaks the exchange format.
        """
        name = ctx.queued.layout.name
        if name not in self._results:
            self._flush()
        return self._results.pop(name)

    def _flush(self) -> None:
        packed = self._take_round()
        # One name for every round: a worker that joins an elastic job mid-training must name its
        # first round as the others name their n-th. Rounds never overlap (each is waited for here,
        # and one DistQ serves one training loop), so the name is never in use twice at once.
        handle = hvd.grouped_allgather_async(
            [packed.header, packed.payload], name="distq.round", process_set=self.process_set
        )
        self._store_round(packed, self.process_set.size(), *hvd.synchronize(handle))


def pack_round(round_layout: wire.RoundLayout, pairs: Sequence[EncodedPairs]) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's header and payload for one round.

    Args:
        round_layout: the round's tensors, in the order they travel.
        pairs: this rank's encoded pairs of each of them, in the same order.

    Returns:
        ``(header, payload)``: uint8 tensors on the pairs' device, as :mod:`horovod_distq.wire` lays them out.
    """
    device = pairs[0].indices.device if pairs else torch.device("cpu")
    fields = round_layout.header([p.indices.numel() for p in pairs])
    header = torch.tensor(fields, dtype=torch.int64, device=device).view(torch.uint8)
    parts = [_as_bytes(t) for p in pairs for t in p.wire_parts()]
    return header, torch.cat([torch.empty(0, dtype=torch.uint8, device=device), *parts])


def _as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    # An empty tensor may carry any stride (torch.from_numpy gives 0), which view() refuses.
    return tensor.contiguous().view(torch.uint8) if tensor.numel() else tensor.new_empty(0, dtype=torch.uint8)


def parse_round(
    round_layout: wire.RoundLayout, ranks: int, gathered_header: torch.Tensor, gathered_payload: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every rank's pairs of each tensor of a round, from the gathered headers and payloads.

    Args:
        round_layout: the round's tensors, as this rank packed them.
        ranks: the number of ranks that gathered (the process set's size).
        gathered_header: every rank's header, concatenated in rank order (uint8).
        gathered_payload: every rank's payload, concatenated in rank order (uint8).

    Returns:
        Per tensor of the round: int64 indices and values in the wire dtype, every rank's
        concatenated in rank order.

    Raises:
        horovod_distq.wire.DistQExchangeError: the data breaks one of
            :meth:`horovod_distq.wire.RoundLayout.checks`, or holds an index outside its tensor;
            every rank gathers the same bytes, so every rank raises it.
    """
    header_table = _header_fields(round_layout, ranks, gathered_header)
    checks = round_layout.checks(header_table, ranks, gathered_header.numel(), gathered_payload.numel(), _HostArrays)
    _raise_first_failure(checks, ranks)
    headers = header_table.tolist()
    pieces: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in round_layout.tensors]
    for spans in round_layout.segments(headers):
        for layout, piece, (start, count) in zip(round_layout.tensors, pieces, spans):
            segment = gathered_payload[start : start + layout.segment_bytes(count)]
            piece.append(decode(layout.encoding, segment, count, layout.index_dtype, layout.gradient_dtype))
    results = [(torch.cat([i for i, _ in piece]), torch.cat([v for _, v in piece])) for piece in pieces]
    _check_indices(round_layout, results, headers)
    return results


class _HostArrays:
    """:class:`horovod_distq.wire.ArrayOps` on host tensors: how this frontend evaluates the checks."""

    @staticmethod
    def int64(values: Sequence[int]) -> torch.Tensor:
        return torch.tensor(list(values), dtype=torch.int64)

    @staticmethod
    def arange(length: int) -> torch.Tensor:
        return torch.arange(length, dtype=torch.int64)

    @staticmethod
    def sum(array: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.sum(array, dim=axis)

    @staticmethod
    def cumsum(array: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.cumsum(array, dim=axis)


def _header_fields(round_layout: wire.RoundLayout, ranks: int, gathered_header: torch.Tensor) -> torch.Tensor:
    # Exactly ``ranks`` headers' worth of bytes, cut or zero-padded, so that every field can be read
    # before the checks tell whether it arrived: int64 [ranks, header items], on the host.
    fitted = torch.zeros(ranks * round_layout.header_bytes, dtype=torch.uint8)
    arrived = gathered_header[: fitted.numel()].cpu()
    fitted[: arrived.numel()] = arrived
    return fitted.view(torch.int64).view(ranks, round_layout.header_items)


def _raise_first_failure(checks: wire.CheckTable, ranks: int) -> None:
    # The whole table at once, in its order (per rank, then the totals): one scan for the first failure.
    per_rank = torch.cat([check.passed for check in checks.per_rank], dim=1).reshape(-1)
    totals = torch.stack([torch.as_tensor(check.passed) for check in checks.totals])
    failures = torch.cat([per_rank, totals]).logical_not().nonzero()
    if failures.numel():
        raise wire.DistQExchangeError(checks.messages.at(int(failures[0]), ranks))


def _check_indices(
    round_layout: wire.RoundLayout, results: list[tuple[torch.Tensor, torch.Tensor]], headers: list[list[int]]
) -> None:
    # A flipped byte must not reach index_add_ (an error on the CPU, a device assert on CUDA). One
    # host sync per round; which rank sent the bad index is worked out only when there is one.
    outside = [(indices < 0) | (indices >= layout.numel) for layout, (indices, _) in zip(round_layout.tensors, results)]
    if not outside or not torch.stack([mask.any() for mask in outside]).any():
        return
    culprits = []  # (rank, tensor) of each tensor's first bad index: the lowest rank that sent one
    for tensor, mask in enumerate(outside):
        if mask.any():
            counts = itertools.accumulate(header[wire.HEADER_FIELDS + tensor] for header in headers)
            culprits.append((bisect.bisect_right(list(counts), int(mask.nonzero()[0])), tensor))
    rank, tensor = min(culprits)
    raise wire.DistQExchangeError(wire.index_message(rank, round_layout.tensors[tensor]))
