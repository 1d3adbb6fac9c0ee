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
from horovod_distq.torch.encoding import EncodedPairs, decode, segment_bytes


@dataclass(frozen=True)
class QueuedTensor:
    """What a rank sends for one tensor and what every receiver needs to parse it."""

    encoding: str
    index_dtype: torch.dtype
    gradient_dtype: torch.dtype
    numel: int
    pairs: EncodedPairs

    def layout(self, name: str) -> str:
        return wire.tensor_layout(name, self.numel, self.encoding, str(self.index_dtype), str(self.gradient_dtype))


@dataclass(frozen=True)
class RoundStats:
    """One exchange round on this rank.

    Attributes:
        tensors: compressed tensors in the round.
        collectives: collective calls the round made (always 1).
        bytes_sent: size of this rank's buffer.
        bytes_received: size of the other ranks' buffers together.
    """

    tensors: int
    collectives: int
    bytes_sent: int
    bytes_received: int


class StepExchange:
    """Queues each tensor's pairs and exchanges all of them in one allgather.

    Args:
        process_set: the Horovod process set the optimizer reduces over.

    Example:
        >>> exchange.submit("fc.weight", queued)      # in compress()
        >>> indices, values = exchange.collect("fc.weight")  # in decompress(): every rank's pairs
    """

    __slots__ = ("_pending", "_results", "_rounds", "last_round", "process_set")

    def __init__(self, process_set: hvd.ProcessSet = hvd.global_process_set) -> None:
        self.process_set = process_set
        self._pending: dict[str, QueuedTensor] = {}
        self._results: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._rounds = 0
        self.last_round: RoundStats | None = None

    def submit(self, name: str, queued: QueuedTensor) -> None:
        if name in self._pending or name in self._results:
            raise RuntimeError(f"DistQ: tensor {name!r} compressed twice before it was decompressed")
        self._pending[name] = queued

    def collect(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All ranks' pairs for ``name``: int64 indices and values (concatenated over ranks)."""
        if name not in self._results:
            self._flush()
        return self._results.pop(name)

    def _flush(self) -> None:
        names = sorted(self._pending)
        queued = [self._pending[n] for n in names]
        self._pending = {}
        checksum = wire.layout_checksum(q.layout(n) for n, q in zip(names, queued))
        counts = [q.pairs.indices.numel() for q in queued]
        header = torch.tensor([len(names), checksum, *counts], dtype=torch.int64)
        device = queued[0].pairs.indices.device if queued else torch.device("cpu")
        parts = [header.to(device).view(torch.uint8)]
        for q in queued:
            parts.extend(q.pairs.segments())
        buffer = torch.cat(parts)
        gathered = hvd.synchronize(
            hvd.allgather_async(buffer, name=f"distq.round.{self._rounds}", process_set=self.process_set)
        )
        self._rounds += 1
        pieces: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {n: [] for n in names}
        offset = 0
        for rank in range(self.process_set.size()):
            header_bytes = wire.header_bytes(len(names))
            their_header = gathered[offset : offset + header_bytes].clone().view(torch.int64).tolist()
            if their_header[: wire.HEADER_FIELDS] != [len(names), checksum]:
                raise RuntimeError(wire.mismatch_message(rank, names))
            offset += header_bytes
            for name, q, count in zip(names, queued, their_header[wire.HEADER_FIELDS :]):
                size = segment_bytes(q.encoding, count, q.index_dtype, q.gradient_dtype)
                pieces[name].append(decode(q.encoding, gathered[offset : offset + size], count, q.index_dtype,
                                           q.gradient_dtype))
                offset += size
        for name, parts_of_name in pieces.items():
            self._results[name] = (torch.cat([p[0] for p in parts_of_name]), torch.cat([p[1] for p in parts_of_name]))
        self.last_round = RoundStats(len(names), 1, buffer.numel(), gathered.numel() - buffer.numel())
