"""Functional entry points to the compiled kernels, for torch tensors."""

from __future__ import annotations

from typing import Any

import torch

from horovod_distq.families import DEFAULT_SAMPLE_SIZE, sparsify_arguments
from horovod_distq.selection import SparseSelection
from horovod_distq.torch import _library  # noqa: F401  (registers torch.ops.distq)


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

    How it fits and selects, and its arguments, are :mod:`horovod_distq.selection`'s.

    Returns:
        A :class:`horovod_distq.selection.SparseSelection` of torch tensors.

    Raises:
        ValueError: invalid ratio, family, stage count or parameter.
        TypeError: a tensor that is not floating point, or a parameter of another family.

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


def initial_loop_state(target: float) -> torch.Tensor:
    """The closed-loop state (4 float64) of a tensor not seen before; see ``csrc/core/control.h``."""
    return torch.ops.distq.initial_loop_state(float(target))


def update_loop_state(state: torch.Tensor, selected: int, numel: int, target: float) -> torch.Tensor:
    """The closed-loop state after a fit at ``exp(state[0])`` selected ``selected`` of ``numel`` entries."""
    return torch.ops.distq.update_loop_state(state, int(selected), int(numel), float(target))
