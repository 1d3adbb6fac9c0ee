"""TensorFlow frontend of horovod-distq.

Example:
    >>> import horovod.tensorflow as hvd
    >>> import horovod_distq.tensorflow as distq
    >>> hvd.init()
    >>> with tf.GradientTape() as tape:
    ...     loss = loss_fn(model(x), y)
    >>> tape = distq.DistributedGradientTape(tape, compression=distq.DistQ(ratio=0.001))
    >>> grads = tape.gradient(loss, model.trainable_variables)
"""

from horovod_distq.selection import SparseSelection
from horovod_distq.tensorflow.compressor import DistQ
from horovod_distq.tensorflow.control import RatioController
from horovod_distq.tensorflow.elastic import VariablesState
from horovod_distq.tensorflow.error_feedback import ErrorFeedback
from horovod_distq.tensorflow.local_adam import move_adam
from horovod_distq.tensorflow.momentum import move_momentum
from horovod_distq.tensorflow.naming import backing_variable
from horovod_distq.tensorflow.ops import sparsify
from horovod_distq.tensorflow.tape import DistributedGradientTape
from horovod_distq.tensorflow.telemetry import DistQTensorBoard

__all__ = [
    "DistQ",
    "DistQTensorBoard",
    "DistributedGradientTape",
    "ErrorFeedback",
    "RatioController",
    "SparseSelection",
    "VariablesState",
    "backing_variable",
    "move_adam",
    "move_momentum",
    "sparsify",
]
