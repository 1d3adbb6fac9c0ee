"""Error feedback: what a step did not send is added to the next step's gradient (claim 9), with
Deep Gradient Compression's momentum correction as an option."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from horovod_distq.compressor import accumulation_dtype
from horovod_distq.state import checked_residuals
from horovod_distq.torch.encoding import dtype_name, is_floating_tensor, torch_dtype


def residual_dtype(gradient_dtype: torch.dtype) -> torch.dtype:
    """The dtype residuals of ``gradient_dtype`` gradients are accumulated in (float32 for 16-bit ones)."""
    return torch_dtype(accumulation_dtype(dtype_name(gradient_dtype)))


class ErrorFeedback:
    """Residuals of compressed gradients, keyed by parameter name; each residual buffer is owned here.

    Keyed by name, never by a gradient tensor: optimizers free and re-create gradients every
    step (``zero_grad(set_to_none=True)``). A residual whose shape no longer matches its
    gradient is dropped and started afresh. Residuals of 16-bit gradients are float32.

    Args:
        momentum: DGC's momentum correction when above 0: each gradient's velocity
            ``u = momentum * u + gradient`` is what accumulates (and what a dense gradient sends),
            and a sent entry clears its velocity too (momentum factor masking). 0: plain error feedback.

    Example:
        >>> memory = ErrorFeedback()
        >>> accumulated = memory.accumulate("fc.weight", grad)      # grad + residual
        >>> memory.keep_unsent("fc.weight", indices, selected_values, sent_values)
    """

    __slots__ = ("_residuals", "_velocities", "momentum")

    def __init__(self, momentum: float = 0.0) -> None:
        self.momentum = momentum
        self._residuals: dict[str, torch.Tensor] = {}
        self._velocities: dict[str, torch.Tensor] = {}

    def accumulate(self, name: str, gradient: torch.Tensor) -> torch.Tensor:
        """Adds ``gradient`` (with momentum correction, its velocity) to the residual of ``name``
        and returns the sum, to select from.

        One pass and no allocation after the first step: the sum is the residual buffer itself,
        which :meth:`keep_unsent` then turns into the next residual. Read it before that call.
        """
        if self.momentum:
            gradient = self._velocity(name, gradient)
        dtype = residual_dtype(gradient.dtype)
        residual = self._residuals.get(name)
        if residual is None or residual.shape != gradient.shape or residual.dtype != dtype:
            if residual is not None:
                warnings.warn(
                    f"DistQ: the residual of {name!r} is {tuple(residual.shape)} x {residual.dtype} but its gradient "
                    f"is {tuple(gradient.shape)} x {gradient.dtype}: it starts afresh (a changed model, or a "
                    "checkpoint of another one)",
                    stacklevel=3,
                )
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
        positions = indices.long()
        flat.index_copy_(0, positions, torch.nan_to_num_(error, nan=0.0, posinf=0.0, neginf=0.0))
        if self.momentum:
            self._velocities[name].view(-1).index_fill_(0, positions, 0.0)

    def flush(self, name: str, gradient: torch.Tensor) -> torch.Tensor:
        """``gradient`` (with momentum correction, its velocity, kept for the next step) plus the
        residual of ``name`` if any (in the gradient's dtype), the residual dropped: what a step
        sending ``name`` dense sends. A residual of another shape is dropped unsent, as
        :meth:`accumulate` would start afresh."""
        sent = self._velocity(name, gradient) if self.momentum else gradient
        residual = self._residuals.pop(name, None)
        if residual is not None and residual.shape == gradient.shape:
            sent = residual.to(gradient.device) + sent
        return sent.to(gradient.dtype)

    def _velocity(self, name: str, gradient: torch.Tensor) -> torch.Tensor:
        """The velocity of ``name`` after this step's ``gradient``: ``momentum * u + gradient``,
        kept in the residual dtype; one of another shape starts afresh at zero."""
        dtype = residual_dtype(gradient.dtype)
        velocity = self._velocities.get(name)
        if velocity is None or velocity.shape != gradient.shape or velocity.dtype != dtype:
            velocity = self._velocities[name] = torch.zeros(gradient.shape, dtype=dtype, device=gradient.device)
        elif velocity.device != gradient.device:
            velocity = self._velocities[name] = velocity.to(gradient.device)
        return velocity.mul_(self.momentum).add_(gradient)

    def velocity(self, name: str) -> torch.Tensor | None:
        """The velocity kept for ``name`` under momentum correction, or None."""
        return self._velocities.get(name)

    def residual(self, name: str) -> torch.Tensor | None:
        """The residual kept for ``name``, or None."""
        return self._residuals.get(name)

    def state_dict(self) -> dict[str, Any]:
        """Copies of the residuals and velocities, for a checkpoint (training goes on changing them)."""
        return {"residuals": {name: residual.clone() for name, residual in self._residuals.items()},
                "velocities": {name: velocity.clone() for name, velocity in self._velocities.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores residuals saved by :meth:`state_dict`, all or nothing.

        Raises:
            ValueError: ``state`` is not what :meth:`state_dict` returns; nothing is changed.
        """
        self.restore(self.validated(state))

    @staticmethod
    def validated(state: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The residuals and velocities :meth:`restore` would load from ``state`` (copies), or ValueError."""
        residuals, velocities = checked_residuals(state, is_floating_tensor)
        return ({name: residual.detach().clone() for name, residual in residuals.items()},
                {name: velocity.detach().clone() for name, velocity in velocities.items()})

    def restore(self, validated: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]) -> None:
        """Makes the residuals and velocities of :meth:`validated` the state. Each moves to its
        gradient's device on use; a residual whose shape or dtype no longer fits its gradient
        starts afresh, with a warning (a velocity, silently)."""
        residuals, velocities = validated
        self._residuals, self._velocities = dict(residuals), dict(velocities)
