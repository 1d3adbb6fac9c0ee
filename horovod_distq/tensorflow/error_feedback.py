"""Error feedback: what a step did not send is added to the next step's gradient (claim 9), with
Deep Gradient Compression's momentum correction as an option."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from horovod_distq.compressor import accumulation_dtype
from horovod_distq.state import checked_residuals
from horovod_distq.tensorflow.encoding import is_floating_array, tf_dtype


def residual_dtype(gradient_dtype: tf.DType) -> tf.DType:
    """The dtype residuals of ``gradient_dtype`` gradients are accumulated in (float32 for 16-bit ones)."""
    return tf_dtype(accumulation_dtype(gradient_dtype.name))


class ErrorFeedback(tf.Module):
    """Residuals of compressed gradients, keyed by gradient name, in ``tf.Variable``s owned here.

    Each residual is a flat variable created on first use (outside any trace, as ``tf.function``
    requires), so ``tf.train.Checkpoint`` saves and restores them. A gradient whose size or dtype
    changes is refused: a variable cannot change shape inside a traced step. Residuals of 16-bit
    gradients are float32.

    Args:
        momentum: DGC's momentum correction when above 0: each gradient's velocity
            ``u = momentum * u + gradient`` (a flat variable as its residual) is what accumulates
            (and what a dense gradient sends), and a sent entry clears its velocity too (momentum
            factor masking). 0: plain error feedback.

    Example:
        >>> memory = ErrorFeedback()
        >>> accumulated = memory.accumulate("dense/kernel", grad)   # grad + residual, flattened
        >>> memory.keep_unsent("dense/kernel", indices, selected_values, sent_values)
    """

    def __init__(self, momentum: float = 0.0) -> None:
        super().__init__(name="error_feedback")
        self.momentum = momentum
        self.residuals: dict[str, tf.Variable] = {}
        self.velocities: dict[str, tf.Variable] = {}

    def accumulate(self, name: str, gradient: tf.Tensor) -> tf.Tensor:
        """Adds ``gradient`` (with momentum correction, its velocity) to the residual of ``name``
        and returns the sum, flattened, to select from.

        Raises:
            ValueError: the gradient of ``name`` changed size or dtype.
        """
        residual = self.prepare(name, gradient.shape.num_elements(), gradient.dtype)
        residual.assign_add(self._sent_part(name, gradient))
        return residual.read_value()

    def prepare(self, name: str, numel: int, gradient_dtype: tf.DType) -> tf.Variable:
        """The residual of ``name`` (and its velocity, with momentum correction), created (zero,
        outside any trace) if it does not exist yet.

        Raises:
            ValueError: the residual of ``name`` exists with another size or dtype.
        """
        if self.momentum:
            self.prepare_velocity(name, numel, gradient_dtype)
        return _prepared(self.residuals, name, numel, gradient_dtype, "residual")

    def prepare_velocity(self, name: str, numel: int, gradient_dtype: tf.DType) -> tf.Variable:
        """The momentum-correction velocity of ``name``, created (zero, outside any trace) if it does not exist yet.

        Raises:
            ValueError: the velocity of ``name`` exists with another size or dtype.
        """
        return _prepared(self.velocities, name, numel, gradient_dtype, "velocity")

    def keep_unsent(self, name: str, indices: tf.Tensor, selected: tf.Tensor, sent: tf.Tensor) -> None:
        """Makes the accumulated gradient minus what was sent the residual of ``name``
        (:class:`horovod_distq.compressor.ErrorFeedbackRole` says how); with momentum correction,
        clears the velocity where entries were sent."""
        residual = self.residuals[name]
        error = selected - tf.cast(sent, residual.dtype)
        error = tf.where(tf.math.is_finite(error), error, 0)
        positions = tf.expand_dims(indices, 1)
        residual.scatter_nd_update(positions, error)
        if self.momentum:
            self.velocities[name].scatter_nd_update(positions, tf.zeros_like(error))

    def flush(self, name: str, gradient: tf.Tensor) -> tf.Tensor:
        """``gradient`` (with momentum correction, its velocity) plus the residual of ``name`` if
        it has one (in the gradient's dtype and shape), the residual then zero: what a step sending
        ``name`` dense sends.

        Raises:
            ValueError: the gradient of ``name`` changed size or dtype.
        """
        numel = gradient.shape.num_elements()
        if self.momentum:
            self.prepare_velocity(name, numel, gradient.dtype)
        sent = self._sent_part(name, gradient)
        if name not in self.residuals:
            return tf.cast(tf.reshape(sent, tf.shape(gradient)), gradient.dtype)
        residual = self.prepare(name, numel, gradient.dtype)
        total = tf.cast(tf.reshape(residual.read_value() + sent, tf.shape(gradient)), gradient.dtype)
        with tf.control_dependencies([total]):
            cleared = residual.assign(tf.zeros_like(residual))
        with tf.control_dependencies([cleared]):
            return tf.identity(total)

    def _sent_part(self, name: str, gradient: tf.Tensor) -> tf.Tensor:
        """What of this step's ``gradient`` (flattened, in the residual dtype) joins the residual or
        goes dense: the gradient, or with momentum correction its velocity after this step."""
        flat = tf.cast(tf.reshape(gradient, [-1]), residual_dtype(gradient.dtype))
        if not self.momentum:
            return flat
        velocity = self.velocities[name]
        velocity.assign(self.momentum * velocity + flat)
        return velocity.read_value()

    def residual(self, name: str) -> tf.Variable | None:
        """The residual kept for ``name`` (flat), or None."""
        return self.residuals.get(name)

    def velocity(self, name: str) -> tf.Variable | None:
        """The velocity kept for ``name`` (flat) under momentum correction, or None."""
        return self.velocities.get(name)

    def state_dict(self) -> dict[str, Any]:
        """Copies of the residuals and velocities (flat NumPy arrays), for a checkpoint."""
        return {kind: {name: np.array(variable.numpy()) for name, variable in variables.items()}
                for kind, variables in (("residuals", self.residuals), ("velocities", self.velocities))}

    def validated(self, state: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The residuals and velocities :meth:`restore` would load from ``state`` (flat copies), or ValueError.

        An array whose variable exists already must match its size and dtype: a traced step
        holds that variable, which cannot change shape.
        """
        parts = checked_residuals(state, is_floating_array)
        flat = tuple({name: np.array(a).reshape(-1) for name, a in part.items()} for part in parts)
        for kind, arrays, variables in (("residual", flat[0], self.residuals), ("velocity", flat[1], self.velocities)):
            for name, array in arrays.items():
                variable = variables.get(name)
                if variable is not None and (variable.shape[0] != array.size or variable.dtype != array.dtype):
                    raise ValueError(
                        f"DistQ {kind} of {name!r}: saved as {array.size} x {array.dtype}, but this DistQ "
                        f"keeps it in {variable.shape[0]} x {variable.dtype.name} (a checkpoint of another model?)"
                    )
        return flat

    def restore(self, validated: tuple[dict[str, np.ndarray], dict[str, np.ndarray]]) -> None:
        """Makes the residuals and velocities of :meth:`validated` the state; the others restart at zero."""
        for arrays, variables, label in zip(validated, (self.residuals, self.velocities), ("residual", "velocity")):
            for name, variable in variables.items():
                variable.assign(arrays[name] if name in arrays else tf.zeros_like(variable))
            with tf.init_scope():
                for name, array in arrays.items():
                    if name not in variables:
                        variables[name] = tf.Variable(array, trainable=False, name=label)


def _prepared(variables: dict[str, tf.Variable], name: str, numel: int, gradient_dtype: tf.DType,
              label: str) -> tf.Variable:
    """``variables[name]``, created (zero, flat, outside any trace) if absent; ValueError if it has
    another size or dtype."""
    dtype = residual_dtype(gradient_dtype)
    variable = variables.get(name)
    if variable is None:
        with tf.init_scope():
            variable = tf.Variable(tf.zeros([numel], dtype), trainable=False, name=label)
        variables[name] = variable
    elif variable.shape.num_elements() != numel or variable.dtype != dtype:
        raise ValueError(
            f"DistQ: gradient {name!r} had {variable.shape.num_elements()} entries accumulated in "
            f"{variable.dtype.name} and now has {numel} x {gradient_dtype.name}; "
            "use a new DistQ for a changed model"
        )
    return variable
