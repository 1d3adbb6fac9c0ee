"""The exchange's format and the checks every receiver makes, shared by both frontends.

In one exchange round every rank puts two uint8 tensors into ONE Horovod grouped allgather:

    header:  int64 [number of tensors, layout checksum, payload bytes, count of tensor 0, count of tensor 1, ...]
    payload: per tensor, in order: indices | values | scales (the ``sign`` encoding's)

Every rank's header has the same length in a round (:attr:`RoundLayout.header_bytes`), so rank r's
header starts at r * header_bytes of the gathered headers, and the gathered headers must be exactly
one per rank long. A header's counts give the sizes of that rank's segments, its payload field
their sum, and the ranks' payload fields must add up to the gathered payload's length: every byte
of the payload belongs to exactly one rank's segment, in rank order. Each receiver evaluates
:meth:`RoundLayout.checks` on the gathered tensors (both frontends evaluate that one statement of
the rules, in their own arrays), then checks every decoded index against its tensor's size. Every
rank gathers the same bytes, so a violation fails every rank alike, with a message naming the rank
whose header broke a rule, or, when a total length is wrong, the rank where the mismatch shows
(Horovod's allgather does not tell which rank sent how many bytes).

Ranks that disagree on which tensors were compressed, or how, fail the same way instead of
misreading each other's bytes or hanging.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple, Protocol

from horovod_distq.encodings import DTYPE_BYTES, value_encoding

# Positions of the fixed fields of a rank's header; one count per tensor follows them.
TENSORS_FIELD = 0
CHECKSUM_FIELD = 1
PAYLOAD_BYTES_FIELD = 2
HEADER_FIELDS = 3
HEADER_ITEM_BYTES = 8
# Indices are int32 below this many entries, int64 from it on (the compiled core states the same rule).
INT32_INDEX_LIMIT = 2**31


class DistQExchangeError(RuntimeError):
    """The gathered exchange data breaks the format (raised on every rank; the message names the rank).

    TensorFlow raises ``tf.errors.InvalidArgumentError`` with the same message instead, from its
    graph's assertions.
    """


def header_bytes(tensors: int) -> int:
    """Bytes of one rank's header in a round with ``tensors`` tensors."""
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

    def scale_bytes(self) -> int:
        """Bytes of the scales a segment ends with (the ``sign`` encoding's; 0 for the others)."""
        return value_encoding(self.encoding).scale_bytes

    def segment_bytes(self, count):
        """Bytes one rank's segment of ``count`` pairs takes (``count`` an int or an integer tensor)."""
        return count * self.pair_bytes() + self.scale_bytes()


def layout_checksum(layouts: Iterable[TensorLayout]) -> int:
    """A checksum of a round's tensor layouts (non-negative, fits int64)."""
    return zlib.crc32("\n".join(layout.text() for layout in layouts).encode())


class ArrayOps(Protocol):
    """The array operations :meth:`RoundLayout.checks` needs beyond Python's operators, in one
    frontend's int64 arrays (host tensors in PyTorch, graph or eager tensors in TensorFlow): each
    frontend supplies these four, and every rule is written once, here."""

    def int64(self, values: Sequence[int]) -> Any:
        """An int64 vector holding ``values``."""

    def arange(self, length: Any) -> Any:
        """The int64 vector 0, 1, ..., ``length`` - 1 (``length`` an int or an integer scalar tensor)."""

    def sum(self, array: Any, axis: int) -> Any:
        """The sum of ``array`` along ``axis``."""

    def cumsum(self, array: Any, axis: int) -> Any:
        """The running sum of ``array`` along ``axis``, each entry included in its own sum."""


class Check(NamedTuple):
    """One row of :class:`CheckTable`: a kind of check, with a column per message.

    Attributes:
        passed: in ``CheckTable.per_rank``, bools ``[ranks, len(messages)]``, true where that rank's
            data passes; in ``CheckTable.totals``, one bool.
        messages: the failure message of each column, naming the rank at fault as :data:`RANK`
            (a total's: the last rank, where its mismatch shows).
    """

    passed: Any
    messages: tuple[str, ...]


def _one_column(passed: Any, message: str) -> Check:
    """A per-rank check of one column, from its ``[ranks]`` conditions."""
    return Check(passed[:, None], (message,))


class CheckTable(NamedTuple):
    """A round's checks in the order they run: every column of ``per_rank`` for rank 0, then for
    rank 1, ..., then ``totals``. A frontend stacks the conditions in that order, finds the first
    false one and raises ``messages.at`` its position."""

    per_rank: list[Check]
    totals: list[Check]

    @property
    def messages(self) -> MessageTable:
        """The templates of the table's columns, and of its totals."""
        return MessageTable([m for check in self.per_rank for m in check.messages],
                            [m for check in self.totals for m in check.messages])


# Stands for the rank in a message template: the rank is written in once a check has failed, so a
# traced graph holds one message per column of checks, not one per rank.
RANK = -7_070_707
RANK_TEXT = f"rank {RANK}"


class MessageTable(NamedTuple):
    """The failure messages of a flat table of checks: ``per_rank`` templates (one per column,
    repeated for every rank, naming it as :data:`RANK`), then ``trailing`` messages (naming the
    last rank as :data:`RANK`, if any)."""

    per_rank: list[str]
    trailing: list[str]

    def at(self, position: int, ranks: int) -> str:
        """The message of the check at ``position`` of a table of ``ranks`` ranks' checks."""
        rank, column = divmod(position, len(self.per_rank))
        if rank >= ranks:
            return self.trailing[position - ranks * len(self.per_rank)].replace(RANK_TEXT, f"rank {ranks - 1}")
        return self.per_rank[column].replace(RANK_TEXT, f"rank {rank}")


@dataclass(frozen=True)
class RoundLayout:
    """One exchange round's tensors, in the order they travel: what every rank must agree on.

    Its methods state the header and the receivers' checks once, for both frontends: with operators
    that Python ints and both frontends' tensors share (``+ * == >= <= &``, indexing), and, where
    the checks need more, the few operations of :class:`ArrayOps`. The PyTorch parser evaluates
    them on header fields read to the host, the TensorFlow parser builds them into its graph.

    Attributes:
        tensors: the layouts of the round's tensors.

    Example:
        >>> one_tensor = RoundLayout((TensorLayout("w", 1000, "float16", "float32"),))
        >>> one_tensor.header([10])[2:], one_tensor.header_bytes
        ([60, 10], 32)
    """

    tensors: tuple[TensorLayout, ...]

    @cached_property
    def checksum(self) -> int:
        return layout_checksum(self.tensors)

    @property
    def names(self) -> list[str]:
        return [layout.name for layout in self.tensors]

    @property
    def header_items(self) -> int:
        """int64 fields in one rank's header."""
        return HEADER_FIELDS + len(self.tensors)

    @property
    def header_bytes(self) -> int:
        """Bytes of one rank's header."""
        return header_bytes(len(self.tensors))

    def payload_bytes(self, counts: Sequence[Any]) -> Any:
        """Bytes of the segments of one rank that sends ``counts`` pairs per tensor (ints or integer tensors)."""
        return sum((layout.segment_bytes(count) for layout, count in zip(self.tensors, counts)), 0)

    def header(self, counts: Sequence[Any]) -> list[Any]:
        """The int64 fields of this rank's header when it sends ``counts`` pairs per tensor.

        Args:
            counts: pairs per tensor, in the round's order (ints or integer scalar tensors).

        Returns:
            ``[tensors, checksum, payload bytes, *counts]``.
        """
        return [len(self.tensors), self.checksum, self.payload_bytes(counts), *counts]

    def segment_sizes(self, counts: Any, ops: ArrayOps) -> Any:
        """Bytes of each segment for ``counts`` (int64, ``[..., tensors]``): every tensor's
        :meth:`TensorLayout.segment_bytes` at once, so a frontend's graph does not grow with the tensors."""
        pair_bytes = ops.int64([layout.pair_bytes() for layout in self.tensors])
        return counts * pair_bytes + ops.int64([layout.scale_bytes() for layout in self.tensors])

    def checks(self, headers: Any, ranks: Any, header_length: Any, payload_length: Any, ops: ArrayOps) -> CheckTable:
        """The receivers' checks of a gathered round: what both frontends evaluate, in their arrays.

        The table's order is the order the rules build on each other: no field is trusted before
        the check that it arrived, no offset is summed from a count out of range. The checks are
        vectorised over ranks (their number may be a tensor, in a traced step under Horovod's elastic
        mode) and tensors, so a frontend evaluates the whole table at once and reports the first
        check that fails in this order. A condition computed past an earlier failure may read zero
        padding or a sum that wrapped around: it is never the one reported.

        Args:
            headers: int64 ``[ranks, header_items]``, ``headers[rank, field]``: the gathered headers
                read from rank * header_bytes on, zeros where the gathered bytes end early.
            ranks: the process set's size (an int, or an integer scalar tensor).
            header_length: bytes of the gathered headers.
            payload_length: bytes of the gathered payload.
            ops: the frontend's array operations.

        Returns:
            Per rank (rank 0's row by row, then rank 1's, ...): its header arrived, it names this
            rank's tensors, it arrived whole, each count in range, its payload field matches its
            counts, the payload holds its segments; then the totals: no header bytes, no payload
            bytes, beyond the last rank's. The data passes a check when its condition is true;
            otherwise every rank raises that check's message.
        """
        header_starts = ops.arange(ranks) * self.header_bytes
        counts = headers[:, HEADER_FIELDS:]
        declared = headers[:, PAYLOAD_BYTES_FIELD]
        agrees = (headers[:, TENSORS_FIELD] == len(self.tensors)) & (headers[:, CHECKSUM_FIELD] == self.checksum)
        in_range = (counts >= 0) & (counts <= ops.int64([layout.numel for layout in self.tensors]))
        header_cut = header_cut_message(RANK, self.header_bytes)
        per_rank = [
            _one_column(header_length >= header_starts + HEADER_FIELDS * HEADER_ITEM_BYTES, header_cut),
            _one_column(agrees, mismatch_message(RANK, self.names)),
            _one_column(header_length >= header_starts + self.header_bytes, header_cut),
            Check(in_range, tuple(count_message(RANK, layout) for layout in self.tensors)),
            _one_column(declared == ops.sum(self.segment_sizes(counts, ops), axis=1), declared_payload_message(RANK)),
            _one_column(ops.cumsum(declared, axis=0) <= payload_length, payload_cut_message(RANK)),
        ]
        totals = [
            Check(header_length == ranks * self.header_bytes, (header_surplus_message(RANK),)),
            Check(payload_length == ops.sum(declared, axis=0), (payload_surplus_message(RANK),)),
        ]
        return CheckTable(per_rank, totals)

    def segments(self, headers: Sequence[Sequence[Any]]) -> list[list[tuple[Any, Any]]]:
        """Where each rank's segment of each tensor lies in the gathered payload (once :meth:`checks` passed).

        Args:
            headers: per rank, its header's fields as ints, ``headers[rank][field]``.

        Returns:
            Per rank, per tensor: ``(first byte, count)``; the segment's length is the layout's
            ``segment_bytes(count)``.
        """
        start = 0
        result = []
        for header in headers:
            spans = []
            for layout, count in zip(self.tensors, header[HEADER_FIELDS : self.header_items]):
                spans.append((start, count))
                start = start + layout.segment_bytes(count)
            result.append(spans)
        return result


# The messages every rank raises; each names the rank at fault, or where a length mismatch shows.
# No quote characters: TensorFlow's graph assertions print their message with quotes escaped.


def _quoted(name: str) -> str:
    return f"`{name}`"


def mismatch_message(rank: int, names: list[str]) -> str:
    """Rank ``rank``'s header says it compressed other tensors than this rank (or with other layouts)."""
    return (
        f"DistQ: rank {rank} compressed other tensors (or with another encoding) than this rank in the "
        f"same round; this rank compressed [{', '.join(map(_quoted, names))}]. Give every rank the same "
        f"DistQ settings."
    )


def header_cut_message(rank: int, header_bytes: int) -> str:
    """The gathered headers end inside rank ``rank``'s header."""
    return (
        f"DistQ: the gathered exchange headers end inside the header of rank {rank} (every rank sends "
        f"{header_bytes} bytes of header in this round): a rank sent a shorter header."
    )


def header_surplus_message(last_rank: int) -> str:
    """The gathered headers go on after the last rank's header."""
    return (
        f"DistQ: the gathered exchange headers go on after the header of rank {last_rank}, the last "
        f"rank: a rank sent a longer header."
    )


def count_message(rank: int, layout: TensorLayout) -> str:
    """Rank ``rank``'s header holds a count outside [0, numel] for ``layout``'s tensor."""
    return (
        f"DistQ: rank {rank} sent a count outside [0, {layout.numel}] for tensor {_quoted(layout.name)} in "
        f"its exchange header."
    )


def declared_payload_message(rank: int) -> str:
    """Rank ``rank``'s header declares another payload size than its counts make."""
    return f"DistQ: the exchange header of rank {rank} declares another payload size than its counts make."


def payload_cut_message(rank: int) -> str:
    """The gathered payload ends before rank ``rank``'s segments, as the headers declare them, do."""
    return (
        f"DistQ: the gathered exchange payload ends inside the segments of rank {rank}: a rank sent "
        f"fewer bytes than its header declares."
    )


def payload_surplus_message(last_rank: int) -> str:
    """The gathered payload goes on after the last rank's segments."""
    return (
        f"DistQ: the gathered exchange payload goes on after the segments of rank {last_rank}, the last "
        f"rank: a rank sent more bytes than its header declares."
    )


def index_message(rank: int, layout: TensorLayout) -> str:
    """Rank ``rank`` sent an index outside [0, numel) for ``layout``'s tensor."""
    return (
        f"DistQ: rank {rank} sent an index outside [0, {layout.numel}) for tensor {_quoted(layout.name)} "
        f"in the exchange."
    )
