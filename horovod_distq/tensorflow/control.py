"""Closed-loop correction of the ratio fed to the fit, per gradient, inside TensorFlow graphs.

The same rule as ``horovod_distq.torch.RatioController`` (the compiled core's ``csrc/core/control.h``,
described there), with each gradient's 4-double state in a ``tf.Variable``, so a traced step
reads the count it selected and moves its fit ratio without leaving the graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from horovod_distq.state import checked_loops
from horovod_distq.tensorflow.encoding import is_floating_array
from horovod_distq.tensorflow.ops import initial_loop_state, update_loop_state


class RatioController(tf.Module):
    """Per gradient name, the ratio to fit at so that the achieved ratio meets ``target``.

    Args:
        target: the ratio of entries to select, in (0, 1].

    Example:
        >>> loop = RatioController(0.001)
        >>> ratio = loop.fit_ratio("dense/kernel")      # 0.001 on the first step
        >>> loop.update("dense/kernel", selected=tf.constant(3000, tf.int64), numel=1_000_000)
    """

    def __init__(self, target: float) -> None:
        super().__init__(name="closed_loop")
        self.target = target
        self.loops: dict[str, tf.Variable] = {}

    def fit_ratio(self, name: str) -> tf.Tensor:
        """The ratio to pass to the fit for ``name`` this step (a float64 scalar tensor)."""
        return tf.exp(self.prepare(name).sparse_read(0))

    def update(self, name: str, selected: tf.Tensor, numel: int, target: float | tf.Tensor | None = None) -> None:
        """Records what the fit at :meth:`fit_ratio` selected and moves the fit ratio towards
        ``target`` (by default the controller's own: a warm-up passes its ratio of the step)."""
        loop = self.prepare(name)
        loop.assign(update_loop_state(loop, selected, numel, self.target if target is None else target))

    def state_dict(self) -> dict[str, Any]:
        """Per-gradient loop state (4 float64 each, NumPy copies), for a checkpoint."""
        return {"target": self.target, "loops": {name: np.array(loop.numpy()) for name, loop in self.loops.items()}}

    def validated(self, state: Any) -> dict[str, np.ndarray]:
        """The loop states :meth:`restore` would load from ``state`` (copies), or ValueError."""
        loops = checked_loops(state, self.target, is_floating_array)
        return {name: np.array(loop, np.float64) for name, loop in loops.items()}

    def restore(self, loops: dict[str, np.ndarray]) -> None:
        """Makes ``loops`` (from :meth:`validated`) the loop states; the others start afresh."""
        for name, variable in self.loops.items():
            variable.assign(loops[name] if name in loops else initial_loop_state(self.target))
        with tf.init_scope():
            for name, loop in loops.items():
                if name not in self.loops:
                    self.loops[name] = tf.Variable(loop, trainable=False, name="loop")

    def prepare(self, name: str) -> tf.Variable:
        """The loop state of ``name``, created (outside any trace) if it does not exist yet."""
        loop = self.loops.get(name)
        if loop is None:
            # Created once, outside any trace, as tf.function requires.
            with tf.init_scope():
                loop = tf.Variable(initial_loop_state(self.target), trainable=False, name="loop")
            self.loops[name] = loop
        return loop
