"""Functional entry points to the compiled kernels, for torch tensors.

Where the compiled library has no kernel for a tensor's device (CUDA in this release: the device
kernels of ``csrc/core/cuda/`` are not bound yet), :func:`sparsify` runs on a host copy of the
tensor and returns its selection on the tensor's device, warning once per device type about the
cost, so that GPU training works (more slowly) instead of failing in the dispatcher.
"""

from __future__ import annotations

import warnings
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
    staged = _runs_on_host(tensor)
    if staged:
        _warn_once_about_staging(tensor.device.type)
    outputs = torch.ops.distq.sparsify(
        tensor.cpu() if staged else tensor, float(ratio), distribution, dof, int(sample_size), stages
    )
    if staged:
        outputs = [output.to(tensor.device) for output in outputs]
    return SparseSelection(*outputs)


def has_kernel(device_type: str) -> bool:
    """Whether the compiled library has a ``distq::sparsify`` kernel for tensors on ``device_type``
    ("cpu", "cuda", ...)."""
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key("distq::sparsify", device_type.upper())
    except RuntimeError:  # a backend whose dispatch key is not its upper-cased name (e.g. a PrivateUse1 one)
        return False


def _runs_on_host(tensor: torch.Tensor) -> bool:
    # Meta and fake tensors have their own kernel (horovod_distq/torch/_library.py).
    return tensor.device.type not in ("cpu", "meta") and not has_kernel(tensor.device.type)


_STAGED_DEVICE_TYPES: set[str] = set()


def _warn_once_about_staging(device_type: str) -> None:
    if device_type in _STAGED_DEVICE_TYPES:
        return
    _STAGED_DEVICE_TYPES.add(device_type)
    warnings.warn(
        f"horovod-distq: this build has no {device_type} kernel of distq.sparsify, so each compressed "
        f"gradient is copied to the host, selected there and its selection copied back: two copies and a "
        f"device synchronisation per gradient and step (README: Known limits).",
        RuntimeWarning,
        stacklevel=3,
    )


def initial_loop_state(target: float) -> torch.Tensor:
    """The closed-loop state (4 float64) of a tensor not seen before; see ``csrc/core/control.h``."""
    return torch.ops.distq.initial_loop_state(float(target))


def update_loop_state(state: torch.Tensor, selected: int, numel: int, target: float) -> torch.Tensor:
    """The closed-loop state after a fit at ``exp(state[0])`` selected ``selected`` of ``numel`` entries."""
    return torch.ops.distq.update_loop_state(state, int(selected), int(numel), float(target))
