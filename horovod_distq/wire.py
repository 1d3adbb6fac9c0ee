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
from dataclasses import dataclass

from horovod_distq.encodings import DTYPE_BYTES, value_encoding

HEADER_FIELDS = 2
HEADER_ITEM_BYTES = 8
# Indices are int32 below this many entries, int64 from it on (the compiled core states the same rule).
INT32_INDEX_LIMIT = 2**31


def header_bytes(tensors: int) -> int:
    """Bytes of the header of a round with ``tensors`` tensors."""
    return (HEADER_FIELDS + tensors) * HEADER_ITEM_BYTES


def index_dtype(numel: int) -> str:
    """The dtype name indices into a tensor of ``numel`` entries travel in."""
    return "int32" if numel < INT32_INDEX_LIMIT else "int64"


@dataclass(frozen=True)
class TensorLayout:
    """What ranks must agree on for one compressed tensor, and the size of its segments.

    Attributes:
        name: the gradient's name.
        numel: entries in the gradient.
        encoding: a name of ``horovod_distq.VALUE_ENCODINGS``.
        gradient_dtype: the gradient's dtype name ("float32", ...).

    Example:
        >>> TensorLayout("fc.weight", 1000, "float16", "float32").segment_bytes(10)
        60
    """

    name: str
    numel: int
    encoding: str
    gradient_dtype: str

    @property
    def index_dtype(self) -> str:
        return index_dtype(self.numel)

    def text(self) -> str:
        return f"{self.name}:{self.numel}:{self.encoding}:{self.index_dtype}:{self.gradient_dtype}"

    def pair_bytes(self) -> int:
        """Bytes per (index, value) pair."""
        return DTYPE_BYTES[self.index_dtype] + value_encoding(self.encoding).value_bytes(self.gradient_dtype)

    def segment_bytes(self, count):
        """Bytes one rank's segment of ``count`` pairs takes (``count`` an int or an integer tensor)."""
        return count * self.pair_bytes() + value_encoding(self.encoding).scale_bytes


def layout_checksum(layouts: Iterable[TensorLayout]) -> int:
    """A checksum of a round's tensor layouts (non-negative, fits int64)."""
    return zlib.crc32("\n".join(layout.text() for layout in layouts).encode())


def mismatch_message(rank: int, names: list[str]) -> str:
    """The error every rank raises when rank ``rank``'s header differs from its own."""
    return (
        f"DistQ: rank {rank} compressed other tensors (or with another encoding) than this rank in the "
        f"same round; this rank compressed {names}. Give every rank the same DistQ settings."
    )
