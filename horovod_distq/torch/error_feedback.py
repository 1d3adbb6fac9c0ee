"""Error feedback: what a step did not send is added to the next step's gradient (claim 9), with
Deep Gradient Compression's momentum correction or local Adam (``horovod_distq.local_adam``) as options."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from horovod_distq.compressor import accumulation_dtype
from horovod_distq.local_adam import LocalAdam
from horovod_distq.state import AdamMoments, checked_adam_moments, checked_residuals
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
        adam: local Adam when given: each gradient's Adam direction ``m_hat / (sqrt(v_hat) + eps)``,
            from moments of this rank's gradients, is what accumulates (and what a dense gradient sends).

    Example:
        >>> memory = ErrorFeedback()
        >>> accumulated = memory.accumulate("fc.weight", grad)      # grad + residual
        >>> memory.keep_unsent("fc.weight", indices, selected_values, sent_values)
    """

    __slots__ = ("_adam_steps", "_first_moments", "_residuals", "_second_moments", "_velocities", "adam", "momentum")

    def __init__(self, momentum: float = 0.0, adam: LocalAdam | None = None) -> None:
        self.momentum = momentum
        self.adam = adam
        self._residuals: dict[str, torch.Tensor] = {}
        self._velocities: dict[str, torch.Tensor] = {}
        self._first_moments: dict[str, torch.Tensor] = {}
        self._second_moments: dict[str, torch.Tensor] = {}
        self._adam_steps: dict[str, int] = {}

    def accumulate(self, name: str, gradient: torch.Tensor) -> torch.Tensor:
        """Adds ``gradient`` (with momentum correction its velocity, with local Adam its
        direction) to the residual of ``name`` and returns the sum, to select from.

        One pass and no allocation after the first step: the sum is the residual buffer itself,
        which :meth:`keep_unsent` then turns into the next residual. Read it before that call.
        """
        gradient = self._update_direction(name, gradient)
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

    def add_back(self, name: str, indices: torch.Tensor, values: torch.Tensor) -> None:
        """Adds ``values`` at ``indices`` to the residual of ``name``: entries this rank sent that
        the exchange did not deliver (the two-phase exchange's owners did not select them)."""
        flat = self._residuals[name].view(-1)
        flat.index_add_(0, indices.long(), values.to(flat.dtype))

    def flush(self, name: str, gradient: torch.Tensor) -> torch.Tensor:
        """``gradient`` (with momentum correction its velocity, with local Adam its direction) plus
        the residual of ``name`` if any (in the gradient's dtype), the residual dropped: what a step
        sending ``name`` dense sends. A residual of another shape is dropped unsent, as
        :meth:`accumulate` would start afresh."""
        sent = self._update_direction(name, gradient)
        residual = self._residuals.pop(name, None)
        if residual is not None and residual.shape == gradient.shape:
            return (residual.to(gradient.device) + sent).to(gradient.dtype)
        # Horovod reduces what it is handed in place and makes it the parameter's gradient, which
        # zero_grad() may zero: never the velocity kept for the next step itself.
        return sent.to(gradient.dtype, copy=bool(self.momentum))

    def _update_direction(self, name: str, gradient: torch.Tensor) -> torch.Tensor:
        """What of this step's ``gradient`` is accumulated or sent: the gradient itself, its
        velocity under momentum correction, or its direction under local Adam (their state updated)."""
        if self.momentum:
            velocity, _ = _state_of(self._velocities, name, gradient)
            return velocity.mul_(self.momentum).add_(gradient)
        if self.adam is None:
            return gradient
        first, fresh = _state_of(self._first_moments, name, gradient)
        second, fresh_second = _state_of(self._second_moments, name, gradient)
        gradient = gradient.to(first.dtype)  # 16-bit gradients: squared in float32
        step = 1 if fresh or fresh_second else self._adam_steps.get(name, 0) + 1
        self._adam_steps[name] = step
        adam = self.adam
        first.mul_(adam.beta1).add_(gradient, alpha=1 - adam.beta1)
        second.mul_(adam.beta2).addcmul_(gradient, gradient, value=1 - adam.beta2)
        first_correction, second_correction = adam.bias_corrections(step)
        denominator = (second / second_correction).sqrt_().add_(adam.eps)
        return (first / first_correction).div_(denominator)

    def velocity(self, name: str) -> torch.Tensor | None:
        """The velocity kept for ``name`` under momentum correction, or None."""
        return self._velocities.get(name)

    def residual(self, name: str) -> torch.Tensor | None:
        """The residual kept for ``name``, or None."""
        return self._residuals.get(name)

    def state_dict(self) -> dict[str, Any]:
        """Copies of the residuals, velocities and local Adam's moments, for a checkpoint
        (training goes on changing them)."""
        return {"residuals": _copies(self._residuals), "velocities": _copies(self._velocities),
                "adam": {"first_moments": _copies(self._first_moments),
                         "second_moments": _copies(self._second_moments), "steps": dict(self._adam_steps)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what :meth:`state_dict` saved, all or nothing.

        Raises:
            ValueError: ``state`` is not what :meth:`state_dict` returns; nothing is changed.
        """
        self.restore(self.validated(state))

    @staticmethod
    def validated(state: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], AdamMoments]:
        """The residuals, velocities and local Adam's state :meth:`restore` would load from
        ``state`` (copies), or ValueError."""
        residuals, velocities = checked_residuals(state, is_floating_tensor)
        adam = checked_adam_moments(state, is_floating_tensor)
        return (_copies(residuals), _copies(velocities),
                AdamMoments(_copies(adam.first_moments), _copies(adam.second_moments), dict(adam.steps)))

    def restore(self, validated: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], AdamMoments]) -> None:
        """Makes what :meth:`validated` returned the state. Each tensor moves to its gradient's
        device on use; a residual whose shape or dtype no longer fits its gradient starts afresh,
        with a warning (a velocity or moments, silently)."""
        residuals, velocities, adam = validated
        self._residuals, self._velocities = dict(residuals), dict(velocities)
        self._first_moments, self._second_moments = dict(adam.first_moments), dict(adam.second_moments)
        self._adam_steps = dict(adam.steps)

def _state_of(states: dict[str, torch.Tensor], name: str, gradient: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """The per-gradient state of ``name`` in ``states`` (a velocity or a moment, in the residual
    dtype, on the gradient's device) and whether it was just started: one of another shape or
    dtype starts afresh at zero."""
    dtype = residual_dtype(gradient.dtype)
    state = states.get(name)
    if state is None or state.shape != gradient.shape or state.dtype != dtype:
        states[name] = torch.zeros(gradient.shape, dtype=dtype, device=gradient.device)
        return states[name], True
    if state.device != gradient.device:
        state = states[name] = state.to(gradient.device)
    return state, False


def _copies(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in tensors.items()}
