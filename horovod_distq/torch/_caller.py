"""Finding the parameter name of a gradient that Horovod's optimizer hands to ``compress()``.

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

# compress() -> DistQ internals -> the optimizer method (and its comprehension frame).
_MAX_FRAMES = 6


def horovod_parameter_name(tensor: torch.Tensor) -> str | None:
    """The name Horovod's optimizer gave the parameter whose gradient is ``tensor``, or None."""
    parameter = None
    frame = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return None
        local = frame.f_locals
        if parameter is None:
            candidate = local.get("p")
            if isinstance(candidate, torch.Tensor) and candidate.grad is tensor:
                parameter = candidate
        names = getattr(local.get("self"), "_parameter_names", None)
        if parameter is not None and isinstance(names, dict):
            return names.get(parameter)
        frame = frame.f_back
    return None
