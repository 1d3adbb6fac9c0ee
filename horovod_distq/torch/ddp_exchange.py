"""The DDP hook's exchange: one round of pairs per gradient bucket, over a torch.distributed process group.

Horovod's allgather takes a different size from each rank; torch.distributed's does not (Gloo and
NCCL need equal sizes, and do not check them: a mismatch can hang). So a bucket's round takes
two collectives on its way: an allgather of each rank's sizes (:data:`SIZE_FIELDS` int64), then
one allgather of header and payload, each rank's padded to the largest rank's bytes, beside the
allreduce of the bucket's dense gradients. The sizes carry the dense length and the settings'
agreement key too, so ranks that disagree fail on every rank before any collective whose sizes
would differ. The header and payload are then cut out of the padding and parsed as Horovod's
exchange parses them (:func:`horovod_distq.torch.exchange.parse_round`).

``exchange="two_phase"`` (:class:`TwoPhaseGroupExchange`) runs Horovod's two-phase exchange
(:mod:`horovod_distq.torch.two_phase_exchange`) on the group: after the same sizes, each rank's
share sizes (one allgather), one ``all_to_all_single`` of the shares, each owner's second selection,
and the padded allgather of the selections (their sizes first), while the dense allreduce runs on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from horovod_distq import wire
from horovod_distq.compressor import SparseContext
from horovod_distq.config import DistQConfig
from horovod_distq.selection import SparseSelection
from horovod_distq.torch.error_feedback import ErrorFeedback
from horovod_distq.torch.exchange import PackedRound, RoundQueue, RoundStats
from horovod_distq.torch.two_phase_exchange import (
    join_shares,
    keep_unselected,
    pack_selections,
    select_owned,
    split_by_owner,
)

# Per rank and round: header bytes, payload bytes, dense entries, settings agreement key.
SIZE_FIELDS = 4
# The agreement key of a rank whose compress() failed (real keys are CRC-32s: non-negative).
FAILED = -1


class GroupMembers:
    """``size()`` and ``rank()`` of a process group, as the neutral layer asks a Horovod process set.

    Args:
        group: a ``torch.distributed`` process group; None for the default one.
    """

    __slots__ = ("group",)

    def __init__(self, group: dist.ProcessGroup | None = None) -> None:
        self.group = group

    def size(self) -> int:
        return dist.get_world_size(self.group)

    def rank(self) -> int:
        return dist.get_rank(self.group)


class ProcessGroupExchange(RoundQueue):
    """Exchanges each bucket's pairs, and allreduces its dense gradients, over a process group.

    Args:
        process_group: the group DDP reduces over; None for the default one.

    Example:
        >>> exchange.submit(queued)                       # compress() of each sparse gradient
        >>> done = exchange.start_round(dense, config, last_of_step=True)  # Future of the dense sum
        >>> indices, values = exchange.collect(ctx)       # once ``done`` has completed
    """

    # Per step: [rounds (one sizes allgather each), rounds whose headers and pairs were gathered].
    __slots__ = ("_rounds_last_step", "_rounds_this_step", "process_set")

    def __init__(self, process_group: dist.ProcessGroup | None = None) -> None:
        super().__init__()
        self.process_set = GroupMembers(process_group)
        self._rounds_this_step = [0, 0]
        self._rounds_last_step = [0, 0]

    def round_header_bytes(self, tensors: int) -> int:
        """Bytes of this rank's sizes and headers in the last step, which compressed ``tensors``
        tensors: sizes in every bucket's round, a header where any rank had pairs to gather (the
        padding up to the largest rank's bytes is not counted)."""
        rounds, gathered = self._rounds_last_step
        sizes = rounds * SIZE_FIELDS * wire.HEADER_ITEM_BYTES
        return sizes + gathered * wire.HEADER_FIELDS * wire.HEADER_ITEM_BYTES + tensors * wire.HEADER_ITEM_BYTES

    def gather_bytes(self, payload: bytes) -> bytes:
        """Every rank's ``payload`` concatenated in rank order (for ``state_dict(all_ranks=True)``)."""
        gathered: list[bytes | None] = [None] * self.process_set.size()
        dist.all_gather_object(gathered, payload, group=self.process_set.group)
        return b"".join(gathered)  # type: ignore[arg-type]

    def collect(self, ctx: SparseContext) -> tuple[torch.Tensor, torch.Tensor]:
        """All ranks' pairs of one tensor of a round that :meth:`start_round` has completed."""
        return self._results.pop(ctx.queued.layout.name)

    def start_round(
        self, dense: torch.Tensor, config: DistQConfig, last_of_step: bool
    ) -> torch.futures.Future[torch.Tensor]:
        """Starts one bucket's round: the queued pairs, and the allreduce of its dense gradients.

        Waits for the sizes (a few bytes per rank) before it returns; the other collectives run on.

        Args:
            dense: the bucket's dense gradients, flattened and concatenated (allreduced in place).
            config: the compressor's settings, whose ``agreement_key()`` ranks must share.
            last_of_step: the step's last bucket (for the bytes accounting).

        Returns:
            A future of ``dense`` summed over the ranks, completed once every rank's pairs of
            the round can be collected; it fails on every rank, with
            ``horovod_distq.DistQExchangeError``, when the gathered pairs break the format.

        Raises:
            ValueError: on every rank, when ranks disagree on settings or on the dense length.
        """
        packed = self._take_round()
        group = self.process_set.group
        ranks = self.process_set.size()
        own = [packed.header.numel(), packed.payload.numel(), dense.numel(), config.agreement_key()]
        # The one host read of the round: the sizes decide the next collective's size.
        rows = self._check_sizes(own, config, dense.device)
        works = [dist.all_reduce(dense, group=group, async_op=True)] if dense.numel() else []
        gathered = None
        if any(header > wire.header_bytes(0) for header, *_ in rows):
            capacity = max(header + payload for header, payload, *_ in rows)
            padded = torch.zeros(capacity, dtype=torch.uint8, device=dense.device)
            padded[: packed.header.numel()] = packed.header
            padded[packed.header.numel() : packed.header.numel() + packed.payload.numel()] = packed.payload
            gathered = padded.new_empty(ranks * capacity)
            works.append(_gather_into(gathered, padded, group=group, async_op=True))
        self._count_round(gathered is not None, last_of_step)

        def finish(done: torch.futures.Future) -> torch.Tensor:
            for future in done.value():
                future.value()  # raises what a collective raised
            if gathered is not None:
                self._store_gathered(packed, rows, gathered.view(ranks, -1))
            return dense

        return torch.futures.collect_all([work.get_future() for work in works]).then(finish)

    def _check_sizes(self, own: list[int], config: DistQConfig, device: torch.device) -> list[list[int]]:
        """Every rank's sizes row (``own``: :data:`SIZE_FIELDS` int64), checked alike on every rank."""
        sizes = _all_gather(torch.tensor(own, dtype=torch.int64, device=device), self.process_set.group)
        rows = sizes.view(self.process_set.size(), SIZE_FIELDS).tolist()
        _check_no_rank_failed(rows)
        config.check_agreement([key for *_, key in rows])
        _check_dense_lengths(rows, own[2])
        return rows

    def fail_round(self, device: torch.device) -> None:
        """Joins the sizes allgather of a bucket this rank could not compress, saying so, so that
        the other ranks raise too instead of waiting for its next collective; drops this bucket's
        queued pairs (earlier buckets' rounds are in flight, and their callbacks collect their pairs)."""
        self._pending.clear()
        _all_gather(torch.tensor([0, 0, 0, FAILED], dtype=torch.int64, device=device), self.process_set.group)

    def _store_gathered(self, packed: PackedRound, rows: list[list[int]], gathered: torch.Tensor) -> None:
        headers = torch.cat([rank[:header] for rank, (header, *_) in zip(gathered, rows)])
        payloads = torch.cat([rank[header : header + payload] for rank, (header, payload, *_) in zip(gathered, rows)])
        self._store_round(packed, len(rows), headers, payloads)

    def _count_round(self, gathered: bool, last_of_step: bool) -> None:
        self._rounds_this_step[0] += 1
        self._rounds_this_step[1] += gathered
        if last_of_step:
            self._rounds_last_step, self._rounds_this_step = self._rounds_this_step, [0, 0]


class TwoPhaseGroupExchange(ProcessGroupExchange):
    """``exchange="two_phase"`` for the DDP hook: each bucket's pairs summed by their owners and
    selected again (module docstring). Synchronous: a bucket's round is done when
    :meth:`start_round` returns, since each phase's sizes come from the one before.

    Args:
        process_group: the group DDP reduces over; None for the default one.
        select: the compressor's selection, ``select(tensor, ratio) -> SparseSelection``.

    Example:
        >>> exchange = TwoPhaseGroupExchange(None, state.select)
        >>> exchange.keep_unselected_in(state.memory)   # with error feedback
    """

    __slots__ = ("_memory", "_select")

    def __init__(
        self, process_group: dist.ProcessGroup | None, select: Callable[[torch.Tensor, float], SparseSelection]
    ) -> None:
        super().__init__(process_group)
        self._select = select
        self._memory: ErrorFeedback | None = None

    def keep_unselected_in(self, memory: ErrorFeedback) -> None:
        """Adds this rank's pairs that no owner selected back to their residuals in ``memory``."""
        self._memory = memory

    def round_header_bytes(self, tensors: int) -> int:
        """Bytes of this rank's sizes and headers in the last step: sizes in every bucket's round;
        in each round with pairs, the share sizes, a header to every owner, the second phase's sizes
        and its header."""
        rounds, gathered = self._rounds_last_step
        ranks = self.process_set.size()
        item = wire.HEADER_ITEM_BYTES
        per_gathered = (ranks + 2) * item + (ranks + 1) * wire.HEADER_FIELDS * item
        return rounds * SIZE_FIELDS * item + gathered * per_gathered + (ranks + 1) * tensors * item

    def start_round(
        self, dense: torch.Tensor, config: DistQConfig, last_of_step: bool
    ) -> torch.futures.Future[torch.Tensor]:
        """One bucket's round in two phases, and the allreduce of its dense gradients; see
        :meth:`ProcessGroupExchange.start_round` (the future returned here has completed)."""
        names, queued = self._take_queued()
        group, ranks, rank = self.process_set.group, self.process_set.size(), self.process_set.rank()
        shares_layout = wire.RoundLayout(tuple(q.layout for q in queued))
        shares, splits = split_by_owner(shares_layout, [q.pairs for q in queued], ranks)
        shares = shares.to(dense.device)
        rows = self._check_sizes([shares.numel(), len(names), dense.numel(), config.agreement_key()], config,
                                 dense.device)
        reduced = dist.all_reduce(dense, group=group, async_op=True) if dense.numel() else None
        gathered = any(tensors for _, tensors, *_ in rows)
        self._count_round(gathered, last_of_step)
        if gathered:
            share_sizes = _all_gather(torch.tensor(splits, dtype=torch.int64, device=dense.device), group)
            incoming = share_sizes.view(ranks, ranks)[:, rank].tolist()
            received = shares.new_empty(sum(incoming))
            dist.all_to_all_single(received, shares, output_split_sizes=incoming, input_split_sizes=splits,
                                   group=group)
            received_header, received_payload = join_shares(received, incoming, shares_layout.header_bytes)
            sums_layout, chosen, failure = select_owned(shares_layout, rank, ranks, received_header,
                                                        received_payload, self._select)
            packed = pack_selections(names, sums_layout, chosen, failure)
            selection_rows = self._gather_padded(packed, dense.device)
            if failure is not None:
                raise failure
            self._store_gathered(packed, selection_rows[0], selection_rows[1])
            sent, received_bytes = shares.numel() - splits[rank], received.numel() - incoming[rank]
            self.last_round = RoundStats(len(names), sent + self.last_round.bytes_sent,
                                         received_bytes + self.last_round.bytes_received)
            if self._memory is not None:
                keep_unselected(self._memory, names, queued, self._results)
        if reduced is not None:
            reduced.wait()
        done: torch.futures.Future[torch.Tensor] = torch.futures.Future()
        done.set_result(dense)
        return done

    def _gather_padded(self, packed: PackedRound, device: torch.device) -> tuple[list[list[int]], torch.Tensor]:
        """Every rank's header and payload of ``packed``'s round: their sizes, then one allgather
        padded to the largest rank's bytes (rows of [header, payload] and the gathered [ranks, bytes])."""
        group, ranks = self.process_set.group, self.process_set.size()
        own = torch.tensor([packed.header.numel(), packed.payload.numel()], dtype=torch.int64, device=device)
        rows = _all_gather(own, group).view(ranks, 2).tolist()
        capacity = max(header + payload for header, payload in rows)
        padded = torch.zeros(capacity, dtype=torch.uint8, device=device)
        padded[: packed.header.numel()] = packed.header
        padded[packed.header.numel() : packed.header.numel() + packed.payload.numel()] = packed.payload
        gathered = padded.new_empty(ranks * capacity)
        _gather_into(gathered, padded, group=group)
        return rows, gathered.view(ranks, -1)


def _gather_into(output: torch.Tensor, tensor: torch.Tensor, **kwargs: Any) -> dist.Work | None:
    # torch 2.13 renamed all_gather_into_tensor (and warns on the old name); older versions have
    # only that. Looked up on each call, as torch.distributed's own hooks do.
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    return gather(output, tensor, **kwargs)


def _all_gather(tensor: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
    gathered = tensor.new_empty(dist.get_world_size(group) * tensor.numel())
    _gather_into(gathered, tensor, group=group)
    return gathered


def _check_no_rank_failed(rows: list[list[int]]) -> None:
    failed = [rank for rank, (*_, key) in enumerate(rows) if key == FAILED]
    if failed:
        raise RuntimeError(f"DistQ: rank(s) {failed} could not compress this DDP bucket (their own error says why)")


def _check_dense_lengths(rows: list[list[int]], dense_numel: int) -> None:
    """Raises on every rank (all hold the same ``rows``) unless the ranks' dense allreduces match."""
    dense = [entries for _, _, entries, _ in rows]
    if len(set(dense)) > 1:
        raise ValueError(
            f"DistQ: ranks send different numbers of a bucket's entries dense ({dense} by rank; this rank "
            f"{dense_numel}): each rank must wrap the same model in DDP. Give every rank the same DistQ settings."
        )
