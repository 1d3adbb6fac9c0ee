"""How a gradient gets its parameter name: read from Horovod's optimizer, which calls ``compress()``.

Horovod's ``Compressor.compress(tensor)`` receives the gradient alone, but error feedback must be
keyed by parameter name: gradients are freed and re-created every step, so their identity means
nothing from one step to the next. Horovod 0.28.1, its last release, always calls ``compress``
from ``_DistributedOptimizer._allreduce_grad_async(self, p)`` (or from the comprehension inside
``_grouped_allreduce_grad_async``), where ``p`` is the parameter and ``self._parameter_names``
maps it to its name. We read those two locals, and accept the answer only if ``p.grad`` is the
very tensor being compressed.
"""

from __future__ import annotations

import sys

import torch

from horovod_distq.naming import NameOwners

# ParameterNames.of -> compress() -> the optimizer method (and its comprehension frame).
_MAX_FRAMES = 6


class ParameterNames:
    """Names gradients after their parameters, as Horovod's ``DistributedOptimizer`` knows them.

    Example:
        >>> names = ParameterNames()
        >>> names.of(grad)  # inside compress() called by Horovod's optimizer: "fc.weight"
    """

    def __init__(self) -> None:
        self._owners = NameOwners("parameters")

    how_to_name = (
        "pass it to hvd.DistributedOptimizer(..., named_parameters=model.named_parameters(), "
        "compression=DistQ(...)) or call compress(tensor, name=...)"
    )

    def of(self, tensor: torch.Tensor) -> str | None:
        """The name Horovod's optimizer gave the parameter whose gradient is ``tensor``, or None.

        Raises:
            ValueError: another parameter of the same name reached this DistQ before.
        """
        parameter = None
        frame = sys._getframe(1)
        for _ in range(_MAX_FRAMES):
            if frame is None:
                return None
            local = frame.f_locals
            if parameter is None:
                candidate = local.get("p")
                if isinstance(candidate, torch.Tensor) and _is_gradient_of(tensor, candidate):
                    parameter = candidate
            names = getattr(local.get("self"), "_parameter_names", None)
            if parameter is not None and isinstance(names, dict):
                name = names.get(parameter)
                if name is not None:
                    self._owners.bind(name, parameter)
                return name
            frame = frame.f_back
        return None


def _is_gradient_of(tensor: torch.Tensor, parameter: torch.Tensor) -> bool:
    """Whether ``tensor`` is what Horovod compresses for ``parameter``: its ``.grad``, or with
    ``sparse_as_dense=True`` the dense copy Horovod makes of a sparse ``.grad`` (an embedding's)."""
    grad = parameter.grad
    return grad is tensor or (grad is not None and grad.is_sparse and grad.shape == tensor.shape)
