"""Error feedback: what a step did not send is added to the next step's gradient (claim 9)."""

from __future__ import annotations

from typing import Any

import torch

from horovod_distq.compressor import accumulation_dtype
from horovod_distq.torch.encoding import dtype_name, torch_dtype


def residual_dtype(gradient_dtype: torch.dtype) -> torch.dtype:
    """The dtype residuals of ``gradient_dtype`` gradients are accumulated in (float32 for 16-bit ones)."""
    return torch_dtype(accumulation_dtype(dtype_name(gradient_dtype)))


class ErrorFeedback:
    """Residuals of compressed gradients, keyed by parameter name; each residual buffer is owned here.

    Keyed by name, never by a gradient tensor: optimizers free and re-create gradients every
    step (``zero_grad(set_to_none=True)``). A residual whose shape no longer matches its
    gradient is dropped and started afresh. Residuals of 16-bit gradients are float32.

    Example:
        >>> memory = ErrorFeedback()
        >>> accumulated = memory.accumulate("fc.weight", grad)      # grad + residual
        >>> memory.keep_unsent("fc.weight", indices, selected_values, sent_values)
    """

    __slots__ = ("_residuals",)

    def __init__(self) -> None:
        self._residuals: dict[str, torch.Tensor] = {}

    def accumulate(self, name: str, gradient: torch.Tensor) -> torch.Tensor:
        """Adds ``gradient`` to the residual of ``name`` and returns the sum, to select from.

        One pass and no allocation after the first step: the sum is the residual buffer itself,
        which :meth:`keep_unsent` then turns into the next residual. Read it before that call.
        """
        dtype = residual_dtype(gradient.dtype)
        residual = self._residuals.get(name)
        if residual is None or residual.shape != gradient.shape or residual.dtype != dtype:
            residual = torch.empty(gradient.shape, dtype=dtype, device=gradient.device)
            residual.copy_(gradient)
            self._residuals[name] = residual
            return residual
        if residual.device != gradient.device:
            residual = self._residuals[name] = residual.to(gradient.device)
        return residual.add_(gradient)

    def keep_unsent(self, name: str, indices: torch.Tensor, selected: torch.Tensor, sent: torch.Tensor) -> None:
        """Makes the accumulated gradient minus what was sent the residual of ``name``
        (:class:`horovod_distq.compressor.ErrorFeedbackRole` says how)."""
        flat = self._residuals[name].view(-1)
        error = selected.to(flat.dtype) - sent.to(flat.dtype)
        flat.index_copy_(0, indices.long(), torch.nan_to_num_(error, nan=0.0, posinf=0.0, neginf=0.0))

    def residual(self, name: str) -> torch.Tensor | None:
        """The residual kept for ``name``, or None."""
        return self._residuals.get(name)

    def state_dict(self) -> dict[str, Any]:
        """The residuals, for a checkpoint."""
        return {"residuals": dict(self._residuals)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores residuals saved by :meth:`state_dict` (moved to each gradient's device on use)."""
        self._residuals = {name: tensor.clone() for name, tensor in state["residuals"].items()}
