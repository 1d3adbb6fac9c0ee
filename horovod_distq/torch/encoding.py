"""Encoding and decoding the (index, value) pairs of one tensor (see ``horovod_distq.VALUE_ENCODINGS``)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from horovod_distq import wire

_WIRE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_FLOAT16_MAX = 65504.0


class EncodedPairs(NamedTuple):
    """One tensor's pairs as they travel, and the values the receivers will decode.

    Attributes:
        indices: flattened positions (for ``sign``, negative entries as ``~index``).
        values: values in the wire dtype (empty for ``sign``).
        scales: float32 ``[positive scale, negative scale]`` for ``sign``, else empty.
        decoded: float values every receiver reconstructs, for error feedback.
    """

    indices: torch.Tensor
    values: torch.Tensor
    scales: torch.Tensor
    decoded: torch.Tensor

    def segments(self) -> list[torch.Tensor]:
        """The byte views that go on the wire, in order."""
        return [t.view(torch.uint8) for t in (self.indices, self.values, self.scales)]


def wire_value_dtype(encoding: str, gradient_dtype: torch.dtype) -> torch.dtype | None:
    """dtype values travel in; None for ``sign`` (no per-pair value)."""
    if encoding == "sign":
        return None
    return gradient_dtype if encoding == "auto" else _WIRE_DTYPES[encoding]


def encode(encoding: str, indices: torch.Tensor, values: torch.Tensor, gradient_dtype: torch.dtype) -> EncodedPairs:
    """Encodes selected pairs.

    Args:
        encoding: a name of ``horovod_distq.VALUE_ENCODINGS``.
        indices: selected flattened positions (int32 or int64).
        values: the selected entries.
        gradient_dtype: dtype of the gradient (what ``auto`` sends).

    Returns:
        The :class:`EncodedPairs`.
    """
    empty_scales = torch.empty(0, dtype=torch.float32, device=values.device)
    if encoding == "sign":
        positive = values > 0
        magnitude = values.abs().float()
        positive_count = positive.sum()
        positive_sum = torch.where(positive, magnitude, 0).sum()
        counts = torch.stack((positive_count, positive.numel() - positive_count)).clamp_(min=1)
        scales = torch.stack((positive_sum, magnitude.sum() - positive_sum)) / counts
        signed = torch.where(positive, indices, ~indices)
        decoded = torch.where(positive, scales[0], -scales[1])
        return EncodedPairs(signed, values.new_empty(0), scales, decoded)
    wire_dtype = wire_value_dtype(encoding, gradient_dtype)
    if wire_dtype == torch.float16:
        # Clamp finite values into range so the excess stays in the residual; NaN and Inf travel as they are.
        values = torch.where(values.isfinite(), values.clamp(-_FLOAT16_MAX, _FLOAT16_MAX), values)
    sent = values.to(wire_dtype)
    return EncodedPairs(indices, sent, empty_scales, sent.float() if sent.dtype != torch.float64 else sent)


def segment_bytes(encoding: str, count: int, index_dtype: torch.dtype, gradient_dtype: torch.dtype) -> int:
    """Bytes one rank's segment of ``count`` pairs takes."""
    return wire.segment_bytes(encoding, count, index_dtype.itemsize, gradient_dtype.itemsize)


def decode(
    encoding: str, segment: torch.Tensor, count: int, index_dtype: torch.dtype, gradient_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`encode` for one rank's segment of bytes: (int64 indices, values)."""
    # Copies, not views: a segment may start at any byte offset of the gathered buffer.
    index_end = count * index_dtype.itemsize
    indices = segment[:index_end].clone().view(index_dtype)
    if encoding == "sign":
        scales = segment[index_end : index_end + 8].clone().view(torch.float32)
        negative = indices < 0
        return torch.where(negative, ~indices, indices).long(), torch.where(negative, -scales[1], scales[0])
    wire_dtype = wire_value_dtype(encoding, gradient_dtype)
    values = segment[index_end : index_end + count * wire_dtype.itemsize].clone().view(wire_dtype)
    return indices.long(), values
