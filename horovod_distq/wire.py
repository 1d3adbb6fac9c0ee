"""The exchange buffer's format, shared by both frontends.

One rank's buffer for one exchange round:

    int64 header: [number of tensors, layout checksum, count of tensor 0, count of tensor 1, ...]
    then per tensor, in order: indices | values | scales (the ``sign`` encoding's)

Every rank checks every header against its own, so ranks that disagree on which tensors were
compressed, or how, all fail instead of misreading each other's bytes or hanging.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from horovod_distq.encodings import value_encoding

HEADER_FIELDS = 2
HEADER_ITEM_BYTES = 8


def header_bytes(tensors: int) -> int:
    """Bytes of the header of a round with ``tensors`` tensors."""
    return (HEADER_FIELDS + tensors) * HEADER_ITEM_BYTES


def tensor_layout(name: str, numel: int, encoding: str, index_dtype: str, gradient_dtype: str) -> str:
    """What ranks must agree on for one tensor, as text."""
    return f"{name}:{numel}:{encoding}:{index_dtype}:{gradient_dtype}"


def layout_checksum(layouts: Iterable[str]) -> int:
    """A checksum of a round's tensor layouts (non-negative, fits int64)."""
    return zlib.crc32("\n".join(layouts).encode())


def segment_bytes(encoding: str, count: int, index_bytes: int, gradient_bytes: int) -> int:
    """Bytes one rank's segment of ``count`` pairs takes.

    Args:
        encoding: a name of ``horovod_distq.VALUE_ENCODINGS``.
        count: number of pairs.
        index_bytes: bytes per index (4 or 8).
        gradient_bytes: bytes per element of the gradient (what ``auto`` sends).

    Returns:
        The size in bytes.

    Example:
        >>> segment_bytes("float16", 10, 4, 4)
        60
    """
    spec = value_encoding(encoding)
    value_bytes = gradient_bytes if spec.value_bytes is None else spec.value_bytes
    return count * (index_bytes + value_bytes) + spec.extra_bytes


def mismatch_message(rank: int, names: list[str]) -> str:
    """The error every rank raises when rank ``rank``'s header differs from its own."""
    return (
        f"DistQ: rank {rank} compressed other tensors (or with another encoding) than this rank in the "
        f"same round; this rank compressed {names}. Give every rank the same DistQ settings."
    )
