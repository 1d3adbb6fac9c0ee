"""The two-phase sparse exchange: each entry's owner sums every rank's pairs and selects again.

Rank ``i mod P`` owns flattened entry ``i`` (interleaved, so that a hot row spreads over the
ranks). A step's round then runs in two phases on Horovod's own collectives:

1. Each rank splits its pairs by owner and one ``alltoall`` with splits (each owner's header and
   payload) hands every owner its share from every rank, in the allgather path's wire format and checks.
2. Each owner sums the pairs it received per entry and selects again from those sums with the
   compressor's own fit, at its share of the step's target: the pairs it received over the number
   of ranks. One grouped ``allgather`` returns every owner's selection to every rank.

A rank's own contribution to the entries no owner selected goes back into its error-feedback
residual, so nothing is lost. Each rank receives about ``k (P - 1) / P`` pairs in each phase (k the
step's target count), about 2k in all whatever P, where the allgather path receives ``k (P - 1)``.
The sums travel in the gradient's accumulation dtype (float32 for 16-bit gradients), so selecting
again rounds nothing away.

A rank whose share breaks the wire format (or whose second selection fails) still joins the second
phase, with a header that names no round, so every rank fails in the step instead of waiting for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import horovod.torch as hvd
import torch

from horovod_distq import wire
from horovod_distq.compressor import EncodedPairs, QueuedTensor, accumulation_dtype
from horovod_distq.encodings import sums_encoding
from horovod_distq.selection import SparseSelection
from horovod_distq.torch.encoding import encode, torch_dtype
from horovod_distq.torch.error_feedback import ErrorFeedback
from horovod_distq.torch.exchange import AllgatherExchange, PackedRound, RoundStats, pack_round, parse_round


class TwoPhaseExchange(AllgatherExchange):
    """Queues each tensor's pairs and exchanges them in two phases (module docstring).

    Args:
        process_set: the Horovod process set the optimizer reduces over.
        select: the compressor's selection, ``select(tensor, ratio) -> SparseSelection``.

    Attributes:
        two_phase: False: a round goes by the allgather alone (``exchange="auto"`` chose it for the step).

    Example:
        >>> exchange = TwoPhaseExchange(hvd.global_process_set, compression.select)
        >>> exchange.keep_unselected_in(compression.memory)   # with error feedback
    """

    __slots__ = ("_memory", "_select", "two_phase")

    def __init__(
        self, process_set: hvd.ProcessSet, select: Callable[[torch.Tensor, float], SparseSelection]
    ) -> None:
        super().__init__(process_set)
        self._select = select
        self._memory: ErrorFeedback | None = None
        self.two_phase = True

    def keep_unselected_in(self, memory: ErrorFeedback) -> None:
        """Adds this rank's pairs that no owner selected back to their residuals in ``memory``."""
        self._memory = memory

    def round_header_bytes(self, tensors: int) -> int:
        """Bytes of this rank's headers in a step that compressed ``tensors`` tensors: one to each
        owner in the first phase, one in the second."""
        if not self.two_phase:
            return super().round_header_bytes(tensors)
        return (self.process_set.size() + 1) * wire.header_bytes(tensors) if tensors else 0

    def _flush(self) -> None:
        if not self.two_phase:
            super()._flush()
            return
        names, queued = self._take_queued()
        ranks = self.process_set.size()
        shares_layout = wire.RoundLayout(tuple(q.layout for q in queued))
        shares_out, splits = split_by_owner(shares_layout, [q.pairs for q in queued], ranks)
        received_header, received_payload = self._alltoall(shares_out, splits, shares_layout.header_bytes)
        sums_layout, chosen, failure = select_owned(shares_layout, self.process_set.rank(), ranks, received_header,
                                                    received_payload, self._select)
        packed = pack_selections(names, sums_layout, chosen, failure)
        handle = hvd.grouped_allgather_async(
            [packed.header, packed.payload], name="distq.round", process_set=self.process_set
        )
        gathered_header, gathered_payload = hvd.synchronize(handle)
        if failure is not None:
            raise failure
        self._store_round(packed, ranks, gathered_header, gathered_payload)
        # This rank's own share never leaves it: only the others' count as sent and received.
        own = splits[self.process_set.rank()]
        first_sent = shares_out.numel() - own
        first_received = received_header.numel() + received_payload.numel() - own
        self.last_round = RoundStats(len(names), first_sent + self.last_round.bytes_sent,
                                     first_received + self.last_round.bytes_received)
        if self._memory is not None:
            keep_unselected(self._memory, names, queued, self._results)

    def _alltoall(
        self, shares: torch.Tensor, splits: Sequence[int], header_bytes: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The first phase's one alltoall: each owner's header and payload out, every rank's header
        and payload for this owner back (:func:`join_shares`)."""
        received, sizes = hvd.alltoall(shares, splits=torch.tensor(splits, dtype=torch.int32), name="distq.shares",
                                       process_set=self.process_set)
        return join_shares(received, sizes.tolist(), header_bytes)


def split_by_owner(
    round_layout: wire.RoundLayout, pairs: Sequence[EncodedPairs], ranks: int
) -> tuple[torch.Tensor, list[int]]:
    """This rank's first phase: each owner's header and payload, owner after owner, and their sizes."""
    owners = [owner_of(p.indices, ranks) for p in pairs]
    shares = [torch.cat(pack_round(round_layout, [_subset(p, owned == owner) for p, owned in zip(pairs, owners)]))
              for owner in range(ranks)]
    return torch.cat(shares), [share.numel() for share in shares]


def join_shares(received: torch.Tensor, sizes: Sequence[int], header_bytes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What an owner received in the first phase (every rank's share, rank after rank, of ``sizes``
    bytes each) as the headers and the payloads concatenated in rank order, which :func:`parse_round`
    reads (a share shorter than a header leaves the headers short, which its checks report)."""
    pieces = torch.split(received, list(sizes))
    return torch.cat([p[:header_bytes] for p in pieces]), torch.cat([p[header_bytes:] for p in pieces])


def select_owned(
    shares_layout: wire.RoundLayout,
    rank: int,
    ranks: int,
    received_header: torch.Tensor,
    received_payload: torch.Tensor,
    select: Callable[[torch.Tensor, float], SparseSelection],
) -> tuple[wire.RoundLayout, list[EncodedPairs], Exception | None]:
    """An owner's second phase: every rank's pairs of its entries, summed per entry and selected
    again at the share of the target the ranks sent it (the pairs received over the ranks).

    Returns:
        The second phase's layout, this owner's selection of each tensor, and the error that
        stopped it (then no pairs): the owner must still join the second phase's collective.
    """
    sums_layout = wire.RoundLayout(tuple(_sums_layout(layout) for layout in shares_layout.tensors))
    try:
        shares = parse_round(shares_layout, ranks, received_header, received_payload)
        _check_owner(shares_layout, shares, rank, ranks)
        chosen = [_select_again(select, indices, values, ranks, layout)
                  for (indices, values), layout in zip(shares, sums_layout.tensors)]
        return sums_layout, chosen, None
    except Exception as error:  # whatever failed here, the other ranks must not wait for this rank
        return sums_layout, [_no_pairs(layout) for layout in sums_layout.tensors], error


def pack_selections(
    names: list[str], sums_layout: wire.RoundLayout, chosen: Sequence[EncodedPairs], failure: Exception | None
) -> PackedRound:
    """The second phase's round; after a failure, with a header that names no round, so that
    every rank's checks fail on it."""
    packed = PackedRound(names, sums_layout, *pack_round(sums_layout, chosen))
    if failure is not None:
        packed.header.view(torch.int64)[1] = -1
    return packed


def keep_unselected(
    memory: ErrorFeedback, names: Sequence[str], queued: Sequence[QueuedTensor],
    results: dict[str, tuple[torch.Tensor, torch.Tensor]],
) -> None:
    """Adds this rank's pairs that no owner selected back to their residuals."""
    for name, q in zip(names, queued):
        unselected = ~torch.isin(q.pairs.indices.long(), results[name][0])
        if bool(unselected.any()):
            memory.add_back(name, q.pairs.indices[unselected], q.pairs.decoded[unselected])


def _select_again(
    select: Callable[[torch.Tensor, float], SparseSelection], indices: torch.Tensor, values: torch.Tensor,
    ranks: int, layout: wire.TensorLayout,
) -> EncodedPairs:
    dtype = torch_dtype(accumulation_dtype(layout.gradient_dtype))
    entries, position = torch.unique(indices, return_inverse=True)
    sums = torch.zeros(entries.numel(), dtype=dtype, device=values.device).index_add_(0, position, values.to(dtype))
    target = indices.numel() / ranks
    if entries.numel() > target:
        chosen = select(sums, target / entries.numel()).indices.long()
        entries, sums = entries[chosen], sums[chosen]
    return encode(layout.encoding, entries.to(torch_dtype(layout.index_dtype)), sums, dtype)


def owner_of(indices: torch.Tensor, ranks: int) -> torch.Tensor:
    """The rank that owns each flattened entry: ``index mod ranks``."""
    return indices.long() % ranks


def _check_owner(
    round_layout: wire.RoundLayout, shares: Sequence[tuple[torch.Tensor, torch.Tensor]], rank: int, ranks: int
) -> None:
    # An entry owned by another rank could be selected by two owners and applied twice.
    for layout, (indices, _) in zip(round_layout.tensors, shares):
        if bool((owner_of(indices, ranks) != rank).any()):
            raise wire.DistQExchangeError(
                f"DistQ: rank {rank} received pairs of {layout.name!r} it does not own (entry mod {ranks} != {rank}): "
                "a rank split its pairs otherwise (another DistQ version or exchange?)"
            )


def _sums_layout(layout: wire.TensorLayout) -> wire.TensorLayout:
    return wire.TensorLayout(layout.name, layout.numel, sums_encoding(layout.gradient_dtype), layout.gradient_dtype)


def _no_pairs(layout: wire.TensorLayout) -> EncodedPairs:
    dtype = torch_dtype(accumulation_dtype(layout.gradient_dtype))
    return encode(layout.encoding, torch.empty(0, dtype=torch_dtype(layout.index_dtype)), torch.empty(0, dtype=dtype),
                  dtype)


def _subset(pairs: EncodedPairs, mask: torch.Tensor) -> EncodedPairs:
    return EncodedPairs(pairs.indices[mask], pairs.values[mask], pairs.scales, pairs.decoded[mask])
