"""Error feedback: what a step did not send is added to the next step's gradient (claim 9)."""

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

    Example:
        >>> memory = ErrorFeedback()
        >>> accumulated = memory.accumulate("dense/kernel", grad)   # grad + residual, flattened
        >>> memory.keep_unsent("dense/kernel", indices, selected_values, sent_values)
    """

    def __init__(self) -> None:
        super().__init__(name="error_feedback")
        self.residuals: dict[str, tf.Variable] = {}

    def accumulate(self, name: str, gradient: tf.Tensor) -> tf.Tensor:
        """Adds ``gradient`` to the residual of ``name`` and returns the sum, flattened, to select from.

        Raises:
            ValueError: the gradient of ``name`` changed size or dtype.
        """
        residual = self.prepare(name, gradient.shape.num_elements(), gradient.dtype)
        residual.assign_add(tf.cast(tf.reshape(gradient, [-1]), residual.dtype))
        return residual.read_value()

    def prepare(self, name: str, numel: int, gradient_dtype: tf.DType) -> tf.Variable:
        """The residual of ``name``, created (zero, outside any trace) if it does not exist yet.

        Raises:
            ValueError: the residual of ``name`` exists with another size or dtype.
        """
        dtype = residual_dtype(gradient_dtype)
        residual = self.residuals.get(name)
        if residual is None:
            with tf.init_scope():
                residual = tf.Variable(tf.zeros([numel], dtype), trainable=False, name="residual")
            self.residuals[name] = residual
        elif residual.shape.num_elements() != numel or residual.dtype != dtype:
            raise ValueError(
                f"DistQ: gradient {name!r} had {residual.shape.num_elements()} entries accumulated in "
                f"{residual.dtype.name} and now has {numel} x {gradient_dtype.name}; "
                "use a new DistQ for a changed model"
            )
        return residual

    def keep_unsent(self, name: str, indices: tf.Tensor, selected: tf.Tensor, sent: tf.Tensor) -> None:
        """Makes the accumulated gradient minus what was sent the residual of ``name``
        (:class:`horovod_distq.compressor.ErrorFeedbackRole` says how)."""
        residual = self.residuals[name]
        error = selected - tf.cast(sent, residual.dtype)
        error = tf.where(tf.math.is_finite(error), error, 0)
        residual.scatter_nd_update(tf.expand_dims(indices, 1), error)

    def flush(self, name: str, gradient: tf.Tensor) -> tf.Tensor:
        """``gradient`` plus the residual of ``name`` (in the gradient's dtype and shape), the
        residual then zero: what a step sending ``name`` dense sends.

        Raises:
            ValueError: the gradient of ``name`` changed size or dtype.
        """
        residual = self.prepare(name, gradient.shape.num_elements(), gradient.dtype)
        total = tf.cast(tf.reshape(residual.read_value(), tf.shape(gradient)) + tf.cast(gradient, residual.dtype),
                        gradient.dtype)
        with tf.control_dependencies([total]):
            cleared = residual.assign(tf.zeros_like(residual))
        with tf.control_dependencies([cleared]):
            return tf.identity(total)

    def residual(self, name: str) -> tf.Variable | None:
        """The residual kept for ``name`` (flat), or None."""
        return self.residuals.get(name)

    def state_dict(self) -> dict[str, Any]:
        """Copies of the residuals (flat NumPy arrays), for a checkpoint."""
        return {"residuals": {name: np.array(residual.numpy()) for name, residual in self.residuals.items()}}

    def validated(self, state: Any) -> dict[str, np.ndarray]:
        """The residuals :meth:`restore` would load from ``state`` (flat copies), or ValueError.

        A residual whose variable exists already must match its size and dtype: a traced step
        holds that variable, which cannot change shape.
        """
        residuals = {name: np.array(r).reshape(-1) for name, r in checked_residuals(state, is_floating_array).items()}
        for name, residual in residuals.items():
            variable = self.residuals.get(name)
            if variable is not None and (variable.shape[0] != residual.size or variable.dtype != residual.dtype):
                raise ValueError(
                    f"DistQ residual of {name!r}: saved as {residual.size} x {residual.dtype}, but this DistQ "
                    f"accumulates it in {variable.shape[0]} x {variable.dtype.name} (a checkpoint of another model?)"
                )
        return residuals

    def restore(self, residuals: dict[str, np.ndarray]) -> None:
        """Makes ``residuals`` (from :meth:`validated`) the residuals; the others restart at zero."""
        for name, variable in self.residuals.items():
            variable.assign(residuals[name] if name in residuals else tf.zeros_like(variable))
        with tf.init_scope():
            for name, residual in residuals.items():
                if name not in self.residuals:
                    self.residuals[name] = tf.Variable(residual, trainable=False, name="residual")
