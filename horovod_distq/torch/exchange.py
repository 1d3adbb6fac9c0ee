"""Moving (index, value) pairs between workers with Horovod's allgather.

Each rank sends its pairs as rows of bytes, ``[k, index bytes + value bytes]``: allgather
concatenates rows, so the receiver needs no per-rank counts, and different counts per rank are
the normal case. The decoded result is the SUM over all pairs (duplicate indices add up), scaled
by the factor Horovod applied to the placeholder allreduce.
"""

from __future__ import annotations

from dataclasses import dataclass

import horovod.torch as hvd
import torch


@dataclass(frozen=True)
class PairLayout:
    """Byte layout of one (index, value) row."""

    index_dtype: torch.dtype
    value_dtype: torch.dtype

    @property
    def index_bytes(self) -> int:
        return self.index_dtype.itemsize

    @property
    def row_bytes(self) -> int:
        return self.index_bytes + self.value_dtype.itemsize


def pack_pairs(indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Rows of bytes, one (index, value) pair per row.

    An empty selection becomes the single row (0, 0.0): adding zero changes nothing, and every
    rank then contributes at least one row, which no backend has to special-case.
    """
    if indices.numel() == 0:
        indices = torch.zeros(1, dtype=indices.dtype, device=indices.device)
        values = torch.zeros(1, dtype=values.dtype, device=values.device)
    k = indices.numel()
    return torch.cat((indices.view(torch.uint8).view(k, -1), values.view(torch.uint8).view(k, -1)), dim=1)


def unpack_pairs(rows: torch.Tensor, layout: PairLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`pack_pairs` for the concatenated rows of all ranks."""
    split = layout.index_bytes
    indices = rows[:, :split].contiguous().view(layout.index_dtype).view(-1)
    values = rows[:, split:].contiguous().view(layout.value_dtype).view(-1)
    return indices, values


class PairExchange:
    """Starts the allgather of one tensor's pairs and turns the gathered pairs into its average.

    Args:
        process_set: the Horovod process set the optimizer reduces over.
    """

    __slots__ = ("process_set",)

    def __init__(self, process_set: hvd.ProcessSet = hvd.global_process_set) -> None:
        self.process_set = process_set

    def start(self, rows: torch.Tensor, name: str | None) -> int:
        """Submits the allgather; returns Horovod's handle. Named ops match across ranks by name,
        so their submission order may differ between ranks."""
        return hvd.allgather_async(rows, name=None if name is None else f"distq.{name}", process_set=self.process_set)

    def finish(
        self,
        handle: int,
        layout: PairLayout,
        numel: int,
        reduction: torch.Tensor,
        accumulate_dtype: torch.dtype,
    ) -> tuple[torch.Tensor, int]:
        """Waits for the allgather and scatter-adds every rank's pairs.

        Args:
            handle: what :meth:`start` returned.
            layout: the row layout every rank used.
            numel: entries of the dense tensor.
            reduction: the 1-element placeholder after Horovod's allreduce of ones: ``size`` for
                op=Sum, 1 for op=Average (with any ``gradient_predivide_factor``), so
                ``reduction / size`` is the factor dense reduction applies to the sum.
            accumulate_dtype: dtype the sum is accumulated in.

        Returns:
            The reduced dense tensor (flat) and the number of bytes received from other ranks.
        """
        rows = hvd.synchronize(handle)
        indices, values = unpack_pairs(rows, layout)
        dense = torch.zeros(numel, dtype=accumulate_dtype, device=values.device)
        dense.index_add_(0, indices, values.to(accumulate_dtype))
        dense.mul_(reduction.to(accumulate_dtype) / self.process_set.size())
        return dense, rows.numel()
