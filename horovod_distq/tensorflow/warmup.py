"""The sparsity warm-up's step counts, per gradient, inside TensorFlow graphs (the schedule:
``horovod_distq.warmup``; the same counter as ``horovod_distq.torch.warmup``'s, each count in a
``tf.Variable`` so a traced step reads its factor and counts the step without retracing)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from horovod_distq.state import checked_warmup_steps


class WarmupCounter(tf.Module):
    """Per gradient name, how many steps it has taken, and the warm-up's factor on its ratio.

    Args:
        factors: the factor at each step, the last one for every later step
            (``DistQConfig.warmup_factors``).

    Example:
        >>> counter = WarmupCounter(Warmup(steps=2).factors(0.01))
        >>> float(counter.factor("dense/kernel"))   # 25.0, then 5.0, then 1.0 from the third step
    """

    def __init__(self, factors: list[float]) -> None:
        super().__init__(name="warmup")
        self._factors = tf.constant(factors, tf.float64)
        self.steps: dict[str, tf.Variable] = {}

    def factor(self, name: str) -> tf.Tensor:
        """This step's factor on the ratio of ``name`` (a float64 scalar tensor); counts the step."""
        counter = self.prepare(name)
        step = counter.read_value()
        # In a traced step the read runs before the increment: TensorFlow keeps the order of a
        # variable's reads and writes as written.
        counter.assign_add(1)
        return tf.gather(self._factors, tf.minimum(step, tf.size(self._factors, tf.int64) - 1))

    @staticmethod
    def capped(ratio: tf.Tensor) -> tf.Tensor:
        return tf.minimum(tf.cast(ratio, tf.float64), tf.constant(1.0, tf.float64))

    def state_dict(self) -> dict[str, Any]:
        """Each gradient's step count, as ints."""
        return {"steps": {name: int(counter.numpy()) for name, counter in self.steps.items()}}

    def validated(self, state: Any) -> dict[str, int]:
        """The step counts :meth:`restore` would load from ``state`` (None: none), or ValueError."""
        return checked_warmup_steps(state)

    def restore(self, steps: dict[str, int]) -> None:
        """Makes ``steps`` (from :meth:`validated`) the step counts; the others start at 0."""
        for name, counter in self.steps.items():
            counter.assign(steps.get(name, 0))
        for name, count in steps.items():
            self.prepare(name).assign(count)

    def prepare(self, name: str) -> tf.Variable:
        """The step count of ``name``, created (outside any trace) if it does not exist yet."""
        counter = self.steps.get(name)
        if counter is None:
            with tf.init_scope():
                counter = tf.Variable(tf.constant(0, tf.int64), trainable=False, name="warmup_steps")
            self.steps[name] = counter
        return counter
