"""Error feedback: what a step did not send is added to the next step's gradient (claim 9)."""

from __future__ import annotations

from typing import Any

import torch


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Residuals of 16-bit gradients are kept in float32: the small entries they hold are the
    ones 16-bit arithmetic would round away."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class ErrorFeedback:
    """Residuals of compressed gradients, keyed by parameter name.

    Keyed by name, never by a gradient tensor: optimizers free and re-create gradients every
    step (``zero_grad(set_to_none=True)``). A residual whose shape no longer matches its
    gradient is dropped and started afresh.

    Example:
        >>> memory = ErrorFeedback()
        >>> accumulated = memory.accumulate("fc.weight", grad)       # grad + residual
        >>> memory.keep_unsent("fc.weight", accumulated, indices, selected_values, sent_values)
    """

    __slots__ = ("_residuals",)

    def __init__(self) -> None:
        self._residuals: dict[str, torch.Tensor] = {}

    def accumulate(self, name: str, gradient: torch.Tensor) -> torch.Tensor:
        """Returns gradient + residual: the residual buffer itself, updated in place.

        One pass and no allocation after the first step; the returned tensor (contiguous, owned by
        this object) must be handed back through :meth:`keep_unsent`.
        """
        dtype = accumulation_dtype(gradient.dtype)
        residual = self._residuals.get(name)
        if residual is None or residual.shape != gradient.shape or residual.dtype != dtype:
            residual = torch.empty(gradient.shape, dtype=dtype, device=gradient.device)
            residual.copy_(gradient)
            self._residuals[name] = residual
            return residual
        if residual.device != gradient.device:
            residual = self._residuals[name] = residual.to(gradient.device)
        return residual.add_(gradient)

    def keep_unsent(
        self, name: str, accumulated: torch.Tensor, indices: torch.Tensor, selected: torch.Tensor, sent: torch.Tensor
    ) -> None:
        """Makes ``accumulated - scatter(indices, sent)`` the residual of ``name``.

        Args:
            name: the parameter name.
            accumulated: the tensor :meth:`accumulate` returned.
            indices: flattened positions that were selected.
            selected: the entries of ``accumulated`` at those positions.
            sent: the values the receivers decode at those positions (after any encoding), so
                the encoding error stays in the residual. Where an accumulated entry was not
                finite the residual restarts at 0 instead of carrying NaN into every later step.
        """
        flat = accumulated.view(-1)
        error = selected.to(flat.dtype) - sent.to(flat.dtype)
        flat.index_copy_(0, indices.long(), torch.nan_to_num_(error, nan=0.0, posinf=0.0, neginf=0.0))
        self._residuals[name] = accumulated

    def residual(self, name: str) -> torch.Tensor | None:
        """The residual kept for ``name``, or None."""
        return self._residuals.get(name)

    def state_dict(self) -> dict[str, Any]:
        """The residuals, for a checkpoint."""
        return {"residuals": dict(self._residuals)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores residuals saved by :meth:`state_dict` (moved to each gradient's device on use)."""
        self._residuals = {name: tensor.clone() for name, tensor in state["residuals"].items()}
