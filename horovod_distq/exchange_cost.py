"""Which path a compressed gradient's exchange is cheaper on at a given number of ranks.

DistQ's pairs travel by allgather: each rank's link carries every other rank's segment once, so
a tensor of n entries sent at ratio r costs ``(P - 1) * (r * n * pair_bytes + scale_bytes)``
bytes per rank, growing with P. A ring allreduce of the dense tensor costs ``2 * (P - 1) / P *
n * element_bytes``, about constant in P. Sparse is cheaper while

    P < 2 * element_bytes / (r * pair_bytes)        (the crossover; scale bytes aside)

e.g. P < 100 for float32 gradients at r = 0.01 (8 bytes a pair: int32 index, float32 value),
P < 200 with the sign encoding (4 bytes a pair). The decision uses only what every rank shares
(P, n, the target ratio, the encoding, the gradient's dtype), never a rank's achieved count, so
every rank decides alike without a collective.
"""

from __future__ import annotations

from horovod_distq.encodings import DTYPE_BYTES, sums_encoding
from horovod_distq.wire import TensorLayout

EXCHANGE_MODES = ("auto", "sparse", "dense", "two_phase")


def sparse_link_bytes(numel: int, ratio: float, ranks: int, encoding: str, gradient_dtype: str) -> float:
    """Bytes on each rank's link for one tensor's pairs at the target ``ratio`` (ring allgather).

    Example:
        >>> sparse_link_bytes(1_000_000, 0.01, 2, "auto", "float32")
        80000.0
    """
    layout = TensorLayout("", numel, encoding, gradient_dtype)
    return (ranks - 1) * float(layout.segment_bytes(ratio * numel))


def two_phase_link_bytes(numel: int, ratio: float, ranks: int, encoding: str, gradient_dtype: str) -> float:
    """Bytes on each rank's link for one tensor under the two-phase exchange at the target ``ratio``:
    its pairs to the other owners (alltoall), then the other owners' selections (allgather), each
    ``(P - 1) / P`` of the target's pairs; the sums travel in the accumulation dtype.

    Example:
        >>> two_phase_link_bytes(1_000_000, 0.01, 8, "auto", "float32")
        140000.0
    """
    share = ratio * numel / ranks
    shares = TensorLayout("", numel, encoding, gradient_dtype).segment_bytes(share)
    selections = TensorLayout("", numel, sums_encoding(gradient_dtype), gradient_dtype).segment_bytes(share)
    return (ranks - 1) * float(shares + selections)


def dense_link_bytes(numel: int, ranks: int, gradient_dtype: str) -> float:
    """Bytes on each rank's link for one tensor's ring allreduce (reduce-scatter, then allgather).

    Example:
        >>> dense_link_bytes(1_000_000, 2, "float32")
        4000000.0
    """
    return 2 * (ranks - 1) / ranks * numel * DTYPE_BYTES[gradient_dtype]


def sparse_is_cheaper(numel: int, ratio: float, ranks: int, encoding: str, gradient_dtype: str) -> bool:
    """Whether the allgather's pairs cost no more than the dense allreduce (a tie, as on one rank, stays sparse)."""
    return cheaper_than_dense("allgather", numel, ratio, ranks, encoding, gradient_dtype)


def cheaper_than_dense(
    exchange: str, numel: int, ratio: float, ranks: int, encoding: str, gradient_dtype: str
) -> bool:
    """Whether one tensor's pairs cost no more link bytes than its dense allreduce under ``exchange``
    ("allgather" or "two_phase"); a tie, as on one rank, stays sparse."""
    link_bytes = two_phase_link_bytes if exchange == "two_phase" else sparse_link_bytes
    return link_bytes(numel, ratio, ranks, encoding, gradient_dtype) <= dense_link_bytes(numel, ranks, gradient_dtype)


def crossover_ranks(ratio: float, encoding: str, gradient_dtype: str) -> float:
    """The number of ranks above which the dense allreduce is cheaper (scale bytes aside).

    Example:
        >>> crossover_ranks(0.01, "auto", "float32")
        100.0
    """
    pair_bytes = TensorLayout("", 1, encoding, gradient_dtype).pair_bytes()
    return 2 * DTYPE_BYTES[gradient_dtype] / (ratio * pair_bytes)
