"""How the values of selected pairs travel: their names and sizes, shared by both frontends."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ValueEncoding:
    """One way of sending the values of (index, value) pairs.

    Attributes:
        name: the ``value_encoding=`` value.
        value_bytes: bytes per value on the wire; None for "the gradient's own element size".
        extra_bytes: fixed bytes per tensor and rank (the two scales of ``sign``).
        description: what is sent, in words.
    """

    name: str
    value_bytes: int | None
    extra_bytes: int
    description: str


VALUE_ENCODINGS: dict[str, ValueEncoding] = {
    e.name: e
    for e in (
        ValueEncoding("auto", None, 0, "values in the gradient's own dtype"),
        ValueEncoding("float32", 4, 0, "values as float32"),
        ValueEncoding("float16", 2, 0, "values as float16 (finite values clamped to +-65504)"),
        ValueEncoding("bfloat16", 2, 0, "values as bfloat16"),
        ValueEncoding(
            "sign", 0, 8,
            "the sign in the index (negative entries as ~index) and one float32 scale per sign: "
            "the mean magnitude of the selected entries of that sign",
        ),
    )
}


def value_encoding(name: str) -> ValueEncoding:
    """Looks up an encoding by name.

    Raises:
        ValueError: unknown name.

    Example:
        >>> value_encoding("float16").value_bytes
        2
    """
    try:
        return VALUE_ENCODINGS[name]
    except KeyError:
        raise ValueError(f"unknown value_encoding {name!r}; expected one of: {', '.join(VALUE_ENCODINGS)}") from None
