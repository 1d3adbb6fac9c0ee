"""How the values of selected pairs travel, stated once for both frontends.

Each frontend's ``encoding.py`` turns a :class:`ValueEncoding` into tensor operations; this module
says what those operations must produce: the wire dtype, the clamp, the per-tensor scales.
"""

from __future__ import annotations

from dataclasses import dataclass

# Bytes per element of the dtypes DistQ sends (gradients, wire values, indices), by dtype name.
DTYPE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4}


@dataclass(frozen=True)
class ValueEncoding:
    """One way of sending the values of (index, value) pairs.

    Attributes:
        name: the ``value_encoding=`` value.
        wire_dtype: the dtype name values travel in; None for "the gradient's own dtype".
        clamp: finite values are clamped to +-clamp before the cast (the excess stays in the
            error-feedback residual); None for no clamp.
        sign_in_index: no per-pair value: the sign travels in the index (negative entries as
            ``~index``) and each rank sends one float32 scale per sign, the mean magnitude of its
            selected entries of that sign, ``[positive scale, negative scale]``.
        description: what is sent, in words.
    """

    name: str
    wire_dtype: str | None
    clamp: float | None
    sign_in_index: bool
    description: str

    @property
    def scale_bytes(self) -> int:
        """Fixed bytes per tensor and rank: the two float32 scales of a sign encoding."""
        return 2 * DTYPE_BYTES["float32"] if self.sign_in_index else 0

    def value_dtype(self, gradient_dtype: str) -> str | None:
        """The dtype name values travel in for a gradient of ``gradient_dtype``; None when no value travels."""
        if self.sign_in_index:
            return None
        return gradient_dtype if self.wire_dtype is None else self.wire_dtype

    def value_bytes(self, gradient_dtype: str) -> int:
        """Bytes per pair's value on the wire."""
        dtype = self.value_dtype(gradient_dtype)
        return 0 if dtype is None else DTYPE_BYTES[dtype]


FLOAT16_MAX = 65504.0

VALUE_ENCODINGS: dict[str, ValueEncoding] = {
    e.name: e
    for e in (
        ValueEncoding("auto", None, None, False, "values in the gradient's own dtype"),
        ValueEncoding("float32", "float32", None, False, "values as float32"),
        ValueEncoding("float16", "float16", FLOAT16_MAX, False, "values as float16 (finite values clamped to +-65504)"),
        ValueEncoding("bfloat16", "bfloat16", None, False, "values as bfloat16"),
        ValueEncoding(
            "sign", None, None, True,
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
        >>> value_encoding("float16").value_bytes("float32")
        2
    """
    try:
        return VALUE_ENCODINGS[name]
    except KeyError:
        raise ValueError(f"unknown value_encoding {name!r}; expected one of: {', '.join(VALUE_ENCODINGS)}") from None


def sums_encoding(gradient_dtype: str) -> str:
    """How sums of a gradient's values travel without rounding (the two-phase exchange's second
    phase): in the dtype error feedback accumulates in, float32 for 16-bit gradients.

    Example:
        >>> sums_encoding("bfloat16")
        'float32'
    """
    return "float32" if gradient_dtype in ("float16", "bfloat16") else "auto"
