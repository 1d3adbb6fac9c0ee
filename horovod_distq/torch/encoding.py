"""Encoding and decoding the (index, value) pairs of one tensor, as ``horovod_distq.VALUE_ENCODINGS`` specifies."""

from __future__ import annotations

import torch

from horovod_distq.compressor import EncodedPairs
from horovod_distq.encodings import value_encoding

_DTYPES = {name: getattr(torch, name) for name in ("float64", "float32", "float16", "bfloat16", "int64", "int32")}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a dtype name ("float32", ...)."""
    return _DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """The name of a torch dtype ("float32", ...), as the neutral layer states dtypes."""
    return str(dtype).removeprefix("torch.")


def is_floating_tensor(value: object) -> bool:
    """Whether ``value`` is a floating-point torch tensor (what residuals and loop states are)."""
    return isinstance(value, torch.Tensor) and value.is_floating_point()


def encode(encoding: str, indices: torch.Tensor, values: torch.Tensor, gradient_dtype: torch.dtype) -> EncodedPairs:
    """Encodes a selection's pairs as ``horovod_distq.VALUE_ENCODINGS[encoding]`` specifies, for a
    gradient of ``gradient_dtype`` (what ``auto`` sends); returns :class:`horovod_distq.compressor.EncodedPairs`.

    Example:
        >>> encode("float16", torch.tensor([3]), torch.tensor([1e6]), torch.float32).decoded
        tensor([65504.])
    """
    spec = value_encoding(encoding)
    empty_scales = torch.empty(0, dtype=torch.float32, device=values.device)
    if spec.sign_in_index:
        positive = values > 0
        magnitude = values.abs().float()
        positive_count = positive.sum()
        positive_sum = torch.where(positive, magnitude, 0).sum()
        counts = torch.stack((positive_count, positive.numel() - positive_count)).clamp_(min=1)
        scales = torch.stack((positive_sum, magnitude.sum() - positive_sum)) / counts
        signed = torch.where(positive, indices, ~indices)
        decoded = torch.where(positive, scales[0], -scales[1])
        return EncodedPairs(signed, values.new_empty(0), scales, decoded)
    if spec.clamp is not None:
        # Clamp finite values into range so the excess stays in the residual; NaN and Inf travel as they are.
        values = torch.where(values.isfinite(), values.clamp(-spec.clamp, spec.clamp), values)
    sent = values.to(torch_dtype(spec.value_dtype(dtype_name(gradient_dtype))))
    return EncodedPairs(indices, sent, empty_scales, sent.float() if sent.dtype != torch.float64 else sent)


def decode(encoding: str, segment: torch.Tensor, count: int, index_dtype: str, gradient_dtype: str) -> tuple[
    torch.Tensor, torch.Tensor
]:
    """Inverse of :func:`encode` for one rank's segment of bytes: (int64 indices, values).

    Args:
        encoding: a name of ``horovod_distq.VALUE_ENCODINGS``.
        segment: the segment's bytes (uint8).
        count: the number of pairs in it.
        index_dtype: the dtype name of its indices.
        gradient_dtype: the gradient's dtype name.
    """
    spec = value_encoding(encoding)
    index_end = count * torch_dtype(index_dtype).itemsize
    indices = _view_copy(segment[:index_end], torch_dtype(index_dtype))
    if spec.sign_in_index:
        scales = _view_copy(segment[index_end : index_end + spec.scale_bytes], torch.float32)
        negative = indices < 0
        return torch.where(negative, ~indices, indices).long(), torch.where(negative, -scales[1], scales[0])
    wire_dtype = torch_dtype(spec.value_dtype(gradient_dtype))
    values = _view_copy(segment[index_end : index_end + count * wire_dtype.itemsize], wire_dtype)
    return indices.long(), values


def _view_copy(data: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # A copy, not a view: a segment may start at any byte offset of the gathered buffer, and an
    # empty one may carry stride 0 (as torch gives empty tensors from NumPy), which view() refuses.
    return data.clone(memory_format=torch.contiguous_format).view(dtype)
