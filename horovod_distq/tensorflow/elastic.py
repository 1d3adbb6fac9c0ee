"""An elastic ``State`` for TensorFlow 2 variables (``tf.Variable`` and Keras 3), for ``hvd.elastic.run``.

Horovod 0.28.1's TensorFlow states do not fit TensorFlow 2 with Keras 3: ``TensorFlowState``
broadcasts its variables once, when it is made (in a job that is already running, a joining
worker makes that collective alone and waits for ever) and not on ``sync()``;
``TensorFlowKerasState`` calls ``optimizer.variables()``, which Keras 3 made a list.
:class:`VariablesState` keeps a list of variables the way Horovod's PyTorch state keeps a model:
copies on ``commit()``, back to them on ``restore()``, rank 0's values broadcast on ``sync()``.
DistQ's own state joins it through :func:`horovod_distq.elastic.register`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import horovod.tensorflow as hvd
import numpy as np
from horovod.common.elastic import ObjectState

from horovod_distq.tensorflow.naming import backing_variable


class VariablesState(ObjectState):
    """Horovod's elastic state of a list of variables, plus plain Python attributes.

    Args:
        variables: the variables to commit, restore and broadcast (``tf.Variable`` or Keras 3):
            e.g. ``model.weights + optimizer.variables`` once the optimizer is built.
        **kwargs: attributes kept alongside (``epoch=0``, ``step=0``), as ``hvd.elastic.ObjectState``.

    Example:
        >>> optimizer.build(model.trainable_variables)
        >>> state = register(VariablesState(model.weights + optimizer.variables, step=0), compression)
        >>> @hvd.elastic.run
        ... def train(state): ...   # state.commit() every few steps
    """

    def __init__(self, variables: Sequence[Any], **kwargs: Any) -> None:
        self.variables = list(variables)
        self._values = self._copies()
        super().__init__(bcast_object=hvd.broadcast_object, get_rank=hvd.rank, **kwargs)

    def save(self) -> None:
        """Keeps a copy of every variable's value (on ``state.commit()``)."""
        self._values = self._copies()
        super().save()

    def restore(self) -> None:
        """Returns every variable to its last saved value (after a failed step)."""
        for variable, value in zip(self.variables, self._values):
            variable.assign(value)
        super().restore()

    def sync(self) -> None:
        """Gives every rank rank 0's values (after workers joined or left), then saves them."""
        hvd.broadcast_variables([backing_variable(v) for v in self.variables], root_rank=0)
        self._values = self._copies()
        super().sync()

    def _copies(self) -> list[np.ndarray]:
        return [np.array(variable.numpy(), copy=True) for variable in self.variables]
