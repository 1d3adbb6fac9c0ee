"""Error feedback: what a step did not send is added to the next step's gradient (claim 9), with
Deep Gradient Compression's momentum correction or local Adam (``horovod_distq.local_adam``) as options."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from horovod_distq.compressor import accumulation_dtype
from horovod_distq.local_adam import LocalAdam
from horovod_distq.state import AdamMoments, checked_adam_moments, checked_residuals
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
        adam: local Adam when given: each gradient's Adam direction ``m_hat / (sqrt(v_hat) + eps)``,
            from moments of this rank's gradients (flat variables) and its step count (an int64
            variable), is what accumulates (and what a dense gradient sends).

    Example:
        >>> memory = ErrorFeedback()
        >>> accumulated = memory.accumulate("dense/kernel", grad)   # grad + residual, flattened
        >>> memory.keep_unsent("dense/kernel", indices, selected_values, sent_values)
    """

    def __init__(self, momentum: float = 0.0, adam: LocalAdam | None = None) -> None:
        super().__init__(name="error_feedback")
        self.momentum = momentum
        self.adam = adam
        self.residuals: dict[str, tf.Variable] = {}
        self.velocities: dict[str, tf.Variable] = {}
        self.first_moments: dict[str, tf.Variable] = {}
        self.second_moments: dict[str, tf.Variable] = {}
        self.adam_steps: dict[str, tf.Variable] = {}

    def accumulate(self, name: str, gradient: tf.Tensor) -> tf.Tensor:
        """Adds ``gradient`` (with momentum correction its velocity, with local Adam its direction)
        to the residual of ``name`` and returns the sum, flattened, to select from.

        Raises:
            ValueError: the gradient of ``name`` changed size or dtype.
        """
        residual = self.prepare(name, gradient.shape.num_elements(), gradient.dtype)
        residual.assign_add(self._sent_part(name, gradient))
        return residual.read_value()

    def prepare(self, name: str, numel: int, gradient_dtype: tf.DType) -> tf.Variable:
        """The residual of ``name`` (and its velocity or moments, with momentum correction or
        local Adam), created (zero, outside any trace) if it does not exist yet.

        Raises:
            ValueError: the residual of ``name`` exists with another size or dtype.
        """
        self.prepare_direction(name, numel, gradient_dtype)
        return _prepared(self.residuals, name, numel, gradient_dtype, "residual")

    def prepare_direction(self, name: str, numel: int, gradient_dtype: tf.DType) -> None:
        """The variables that turn a gradient of ``name`` into what it sends: its velocity under
        momentum correction, its moments and step count under local Adam (none otherwise),
        created (zero, outside any trace) if they do not exist yet.

        Raises:
            ValueError: they exist with another size or dtype.
        """
        if self.momentum:
            _prepared(self.velocities, name, numel, gradient_dtype, "velocity")
        if self.adam is not None:
            _prepared(self.first_moments, name, numel, gradient_dtype, "first_moment")
            _prepared(self.second_moments, name, numel, gradient_dtype, "second_moment")
            if name not in self.adam_steps:
                with tf.init_scope():
                    self.adam_steps[name] = tf.Variable(0, dtype=tf.int64, trainable=False, name="adam_steps")

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
        """``gradient`` (with momentum correction its velocity, with local Adam its direction) plus
        the residual of ``name`` if it has one (in the gradient's dtype and shape), the residual
        then zero: what a step sending ``name`` dense sends.

        Raises:
            ValueError: the gradient of ``name`` changed size or dtype.
        """
        numel = gradient.shape.num_elements()
        self.prepare_direction(name, numel, gradient.dtype)
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
        goes dense: the gradient, with momentum correction its velocity after this step, with
        local Adam its direction (their variables updated)."""
        flat = tf.cast(tf.reshape(gradient, [-1]), residual_dtype(gradient.dtype))
        if self.momentum:
            velocity = self.velocities[name]
            velocity.assign(self.momentum * velocity + flat)
            return velocity.read_value()
        if self.adam is None:
            return flat
        adam, first, second = self.adam, self.first_moments[name], self.second_moments[name]
        step = tf.cast(self.adam_steps[name].assign_add(1), tf.float64)
        first.assign(adam.beta1 * first + (1 - adam.beta1) * flat)
        second.assign(adam.beta2 * second + (1 - adam.beta2) * tf.square(flat))
        # In float64, as torch's frontend computes them in Python: 1 - 0.999 loses digits in float32.
        first_correction = tf.cast(1 - tf.pow(tf.constant(adam.beta1, tf.float64), step), flat.dtype)
        second_correction = tf.cast(1 - tf.pow(tf.constant(adam.beta2, tf.float64), step), flat.dtype)
        return (first.read_value() / first_correction) / (tf.sqrt(second.read_value() / second_correction) + adam.eps)

    def residual(self, name: str) -> tf.Variable | None:
        """The residual kept for ``name`` (flat), or None."""
        return self.residuals.get(name)

    def velocity(self, name: str) -> tf.Variable | None:
        """The velocity kept for ``name`` (flat) under momentum correction, or None."""
        return self.velocities.get(name)

    def state_dict(self) -> dict[str, Any]:
        """Copies of the residuals, velocities and local Adam's moments and steps (flat NumPy
        arrays, ints), for a checkpoint."""
        return {"residuals": _arrays(self.residuals), "velocities": _arrays(self.velocities),
                "adam": {"first_moments": _arrays(self.first_moments), "second_moments": _arrays(self.second_moments),
                         "steps": {name: int(step.numpy()) for name, step in self.adam_steps.items()}}}

    def validated(self, state: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], AdamMoments]:
        """The residuals, velocities and local Adam's state :meth:`restore` would load from
        ``state`` (flat copies), or ValueError.

        An array whose variable exists already must match its size and dtype: a traced step
        holds that variable, which cannot change shape.
        """
        residuals, velocities = (_flat(part) for part in checked_residuals(state, is_floating_array))
        adam = checked_adam_moments(state, is_floating_array)
        adam = AdamMoments(_flat(adam.first_moments), _flat(adam.second_moments), dict(adam.steps))
        for kind, arrays, variables in (("residual", residuals, self.residuals),
                                        ("velocity", velocities, self.velocities),
                                        ("first moment", adam.first_moments, self.first_moments),
                                        ("second moment", adam.second_moments, self.second_moments)):
            for name, array in arrays.items():
                variable = variables.get(name)
                if variable is not None and (variable.shape[0] != array.size or variable.dtype != array.dtype):
                    raise ValueError(
                        f"DistQ {kind} of {name!r}: saved as {array.size} x {array.dtype}, but this DistQ "
                        f"keeps it in {variable.shape[0]} x {variable.dtype.name} (a checkpoint of another model?)"
                    )
        return residuals, velocities, adam

    def restore(self, validated: tuple[dict[str, np.ndarray], dict[str, np.ndarray], AdamMoments]) -> None:
        """Makes what :meth:`validated` returned the state; the others restart at zero."""
        residuals, velocities, adam = validated
        steps = {name: np.int64(step) for name, step in adam.steps.items()}
        for arrays, variables, label in ((residuals, self.residuals, "residual"),
                                         (velocities, self.velocities, "velocity"),
                                         (adam.first_moments, self.first_moments, "first_moment"),
                                         (adam.second_moments, self.second_moments, "second_moment"),
                                         (steps, self.adam_steps, "adam_steps")):
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


def _arrays(variables: dict[str, tf.Variable]) -> dict[str, np.ndarray]:
    return {name: np.array(variable.numpy()) for name, variable in variables.items()}


def _flat(arrays: dict[str, Any]) -> dict[str, np.ndarray]:
    return {name: np.array(array).reshape(-1) for name, array in arrays.items()}
