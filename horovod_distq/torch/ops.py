"""Functional entry points to the compiled kernels, for torch tensors.

A build with CUDA kernels (setup.py: a CUDA build of torch and nvcc) selects CUDA tensors on the
device. Where the compiled library has no kernel for a tensor's device, :func:`sparsify` runs on a
host copy of the tensor and returns its selection on the tensor's device, warning once per device
type about the cost, so that GPU training works (more slowly) instead of failing in the dispatcher.

:func:`sparsify` returns a selection of its exact size, which on a GPU means reading its count to
the host. The compressor takes :func:`sparsify_pending` instead, whose count stays on the device
until :func:`read_counts` reads every gradient's count of a step in one copy.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

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


class PendingSelection(NamedTuple):
    """A selection whose count is still on the tensor's device: room for ``indices.numel()``
    entries, of which the first ``count`` hold the selection (:meth:`resolve` narrows it).

    Attributes:
        indices, values: the room, its first ``count`` entries written (all of them when ``count``
            fits in it).
        count: int64 0-d tensor on the device, the number selected; it may exceed the room.
        threshold, center: as :class:`horovod_distq.selection.SparseSelection`'s.
        again: runs the same selection with room for a given count.
    """

    indices: torch.Tensor
    values: torch.Tensor
    count: torch.Tensor
    threshold: torch.Tensor
    center: torch.Tensor
    again: Callable[[int], PendingSelection]

    def resolve(self, selected: int) -> SparseSelection:
        """The selection of exact size, given its count as read on the host; a selection that kept
        more than its room is run again with room for all of it."""
        pending = self if selected <= self.indices.numel() else self.again(selected)
        return SparseSelection(pending.indices[:selected], pending.values[:selected], pending.threshold, pending.center)


# Device types whose compressed gradients keep their counts on the device until the step's exchange
# reads them all at once (read_counts). Tests add "cpu" to run that path on a machine without a GPU.
DEFERRED_COUNT_DEVICES: set[str] = {"cuda"}


def defers_count(tensor: torch.Tensor) -> bool:
    """Whether the compressor selects ``tensor`` by :func:`sparsify_pending`."""
    return tensor.device.type in DEFERRED_COUNT_DEVICES and has_padded_kernel(tensor.device.type)


def sparsify_pending(
    tensor: torch.Tensor,
    ratio: float,
    distribution: str = "normal",
    *,
    stages: int | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    capacity: int = -1,
    **family_params: Any,
) -> PendingSelection:
    """:func:`sparsify` with the count left on the tensor's device.

    Args:
        capacity: room for this many entries; -1: twice what the first stage fits at, plus 1024
            (``selection_capacity`` in ``csrc/core/sparsify.h``).
        the others: :func:`sparsify`'s.

    Returns:
        A :class:`PendingSelection`.

    Example:
        >>> pending = sparsify_pending(g.cuda(), 0.001)
        >>> selection = pending.resolve(read_counts([pending.count])[0])
    """
    dof, stages = sparsify_arguments(distribution, ratio, stages, **family_params)

    def select(room: int) -> PendingSelection:
        outputs = torch.ops.distq.sparsify_padded(
            tensor, float(ratio), distribution, dof, int(sample_size), stages, int(room)
        )
        return PendingSelection(*outputs, again=select)

    return select(capacity)


def read_counts(counts: Sequence[torch.Tensor]) -> list[int]:
    """The counts of a step's pending selections, read to the host in one copy: on a GPU the compress
    path's one device-to-host read per step."""
    return torch.stack(list(counts)).tolist() if counts else []


def has_padded_kernel(device_type: str) -> bool:
    """Whether the compiled library has a ``distq::sparsify_padded`` kernel for ``device_type``."""
    return _has_kernel("distq::sparsify_padded", device_type)


def has_kernel(device_type: str) -> bool:
    """Whether the compiled library has a ``distq::sparsify`` kernel for tensors on ``device_type``
    ("cpu", "cuda", ...)."""
    return _has_kernel("distq::sparsify", device_type)


def _has_kernel(op: str, device_type: str) -> bool:
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(op, device_type.upper())
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
