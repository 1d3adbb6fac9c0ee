"""Functional entry points to the compiled kernels."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from horovod_distq.families import sparsify_arguments
from horovod_distq.torch import _library  # noqa: F401  (registers torch.ops.distq)

DEFAULT_SAMPLE_SIZE = 4096


class SparseSelection(NamedTuple):
    """Entries of a tensor beyond a fitted threshold.

    Attributes:
        indices: flattened (row-major) positions, int32 when numel < 2^31, else int64.
        values: the entries at those positions, in the tensor's dtype.
        threshold: 0-d tensor, float64 for float64 input and float32 otherwise.
        center: 0-d tensor of the same dtype; 0 for magnitude families.
    """

    indices: torch.Tensor
    values: torch.Tensor
    threshold: torch.Tensor
    center: torch.Tensor


def sparsify(
    tensor: torch.Tensor,
    ratio: float,
    distribution: str = "normal",
    *,
    stages: int | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    **family_params: Any,
) -> SparseSelection:
    """Selects the entries of ``tensor`` beyond the threshold of a fitted distribution.

    The family is fitted to the finite entries of the tensor, its quantile at ``ratio`` becomes
    the threshold, and one pass selects exactly the entries ``x`` with
    ``x != 0 and not abs(x - center) < threshold`` (compared in float32, or float64 for float64
    tensors), so NaN and Inf are always selected and zeros never are. A pure function: it keeps
    no history.

    With ``stages > 1`` the threshold is refined by peaks over threshold (SIDCo): stage 1 fits the
    tensor at ``min(ratio ** (1 / stages), 8 * ratio)`` (at ``ratio ** (1 / stages)`` if that kept fewer
    than the target); each later stage fits the family, folded at 0, to the
    excesses of the entries still selected over the current threshold, at the ratio that takes
    their count to the target in the stages left, and raises the threshold by that quantile.
    The result is still exactly the entries beyond the final threshold.

    Args:
        tensor: float32, float64, float16 or bfloat16 tensor of any shape and layout.
        ratio: target fraction of entries to select, in (0, 1].
        distribution: a family of ``horovod_distq.FAMILIES``.
        stages: number of peaks-over-threshold stages (1 = a single fit); None: 3 for ``auto``, else 1.
        sample_size: strided sample size for medians and quartiles (laplace, cauchy).
        **family_params: the family's parameters (``dof`` for ``student_t``).

    Returns:
        A :class:`SparseSelection`.

    Raises:
        ValueError: invalid ratio, family or parameter.
        TypeError: a tensor that is not floating point.

    Example:
        >>> g = torch.randn(1_000_000)
        >>> sel = sparsify(g, 0.001)
        >>> sel.indices.numel()  # about 1000
    """
    dof, stages = sparsify_arguments(distribution, ratio, stages, **family_params)
    indices, values, threshold, center = torch.ops.distq.sparsify(
        tensor, float(ratio), distribution, dof, int(sample_size), stages
    )
    return SparseSelection(indices, values, threshold, center)
