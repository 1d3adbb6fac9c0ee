"""Error feedback: what a step did not send is added to the next step's gradient (claim 9)."""

from __future__ import annotations

import tensorflow as tf

from horovod_distq.compressor import accumulation_dtype
from horovod_distq.tensorflow.encoding import tf_dtype


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
        numel = gradient.shape.num_elements()
        dtype = residual_dtype(gradient.dtype)
        residual = self.residuals.get(name)
        if residual is None:
            with tf.init_scope():
                residual = tf.Variable(tf.zeros([numel], dtype), trainable=False, name="residual")
            self.residuals[name] = residual
        elif residual.shape.num_elements() != numel or residual.dtype != dtype:
            raise ValueError(
                f"DistQ: gradient {name!r} had {residual.shape.num_elements()} entries accumulated in "
                f"{residual.dtype.name} and now has {numel} x {gradient.dtype.name}; "
                "use a new DistQ for a changed model"
            )
        residual.assign_add(tf.cast(tf.reshape(gradient, [-1]), dtype))
        return residual.read_value()

    def keep_unsent(self, name: str, indices: tf.Tensor, selected: tf.Tensor, sent: tf.Tensor) -> None:
        """Makes the accumulated gradient minus what was sent the residual of ``name``
        (:class:`horovod_distq.compressor.ErrorFeedbackRole` says how)."""
        residual = self.residuals[name]
        error = selected - tf.cast(sent, residual.dtype)
        error = tf.where(tf.math.is_finite(error), error, tf.zeros_like(error))
        residual.scatter_nd_update(indices[:, None], error)

    def residual(self, name: str) -> tf.Variable | None:
        """The residual kept for ``name`` (flat), or None."""
        return self.residuals.get(name)
