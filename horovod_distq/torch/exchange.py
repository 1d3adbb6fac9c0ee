"""One allgather per step for the pairs of every compressed tensor.

``compress()`` only queues a tensor's encoded pairs. The first ``decompress()`` of the step (Horovod
calls them after every ``compress()`` of the step) packs the queue into one byte buffer per rank
(format: :mod:`horovod_distq.wire`) and runs one allgather, so the number of collective calls per
step does not grow with the number of layers. Tensors are packed in name order, so ranks may
compress them in different orders.
"""

from __future__ import annotations

from dataclasses import dataclass

import horovod.torch as hvd
import torch

from horovod_distq import wire
from horovod_distq.compressor import QueuedTensor, SparseContext
from horovod_distq.torch.encoding import decode


@dataclass(frozen=True)
class RoundStats:
    """One exchange round on this rank.

    Attributes:
        tensors: compressed tensors in the round.
        bytes_sent: size of this rank's buffer.
        bytes_received: size of the other ranks' buffers together.
    """

    tensors: int
    bytes_sent: int
    bytes_received: int


class StepExchange:
    """Queues each tensor's pairs and exchanges all of them in one allgather.

    Args:
        process_set: the Horovod process set the optimizer reduces over.

    Example:
        >>> exchange.submit(queued)                 # in compress()
        >>> indices, values = exchange.collect(ctx)  # in decompress(): every rank's pairs
    """

    # One header per round, not per tensor (see bytes accounting in horovod_distq.compressor).
    tensor_header_bytes = 0

    __slots__ = ("_pending", "_results", "_rounds", "last_round", "process_set")

    def __init__(self, process_set: hvd.ProcessSet = hvd.global_process_set) -> None:
        self.process_set = process_set
        self._pending: dict[str, QueuedTensor] = {}
        self._results: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._rounds = 0
        self.last_round: RoundStats | None = None

    @staticmethod
    def round_header_bytes(tensors: int) -> int:
        """Bytes of the header of a step that compressed ``tensors`` tensors."""
        return wire.header_bytes(tensors) if tensors else 0

    def submit(self, queued: QueuedTensor) -> None:
        """Queues one tensor's pairs for the step's round."""
        name = queued.layout.name
        if name in self._pending or name in self._results:
            raise RuntimeError(f"DistQ: tensor {name!r} compressed twice before it was decompressed")
        self._pending[name] = queued

    def collect(self, ctx: SparseContext) -> tuple[torch.Tensor, torch.Tensor]:
        """All ranks' pairs for one tensor: int64 indices and values (concatenated over ranks)."""
        name = ctx.queued.layout.name
        if name not in self._results:
            self._flush()
        return self._results.pop(name)

    def _flush(self) -> None:
        names = sorted(self._pending)
        queued = [self._pending[n] for n in names]
        self._pending = {}
        layouts = [q.layout for q in queued]
        checksum = wire.layout_checksum(layouts)
        header = torch.tensor([len(names), checksum, *(q.pairs.indices.numel() for q in queued)], dtype=torch.int64)
        device = queued[0].pairs.indices.device if queued else torch.device("cpu")
        parts = [header.to(device), *(t for q in queued for t in q.pairs.wire_parts())]
        buffer = torch.cat([t.view(torch.uint8) for t in parts])
        gathered = hvd.synchronize(
            hvd.allgather_async(buffer, name=f"distq.round.{self._rounds}", process_set=self.process_set)
        )
        self._rounds += 1
        pieces: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {n: [] for n in names}
        offset = 0
        header_bytes = wire.header_bytes(len(names))
        for rank in range(self.process_set.size()):
            their_header = gathered[offset : offset + header_bytes].clone().view(torch.int64).tolist()
            if their_header[: wire.HEADER_FIELDS] != [len(names), checksum]:
                raise RuntimeError(wire.mismatch_message(rank, names))
            offset += header_bytes
            for layout, count in zip(layouts, their_header[wire.HEADER_FIELDS :]):
                size = layout.segment_bytes(count)
                segment = gathered[offset : offset + size]
                pieces[layout.name].append(
                    decode(layout.encoding, segment, count, layout.index_dtype, layout.gradient_dtype)
                )
                offset += size
        for name, parts in pieces.items():
            self._results[name] = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
        self.last_round = RoundStats(len(names), buffer.numel(), gathered.numel() - buffer.numel())
