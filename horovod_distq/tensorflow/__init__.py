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

from horovod_distq.tensorflow.compressor import DistQ, TensorState
from horovod_distq.tensorflow.ops import SparseSelection, sparsify
from horovod_distq.tensorflow.tape import DistributedGradientTape, backing_variable

__all__ = ["DistQ", "DistributedGradientTape", "SparseSelection", "TensorState", "backing_variable", "sparsify"]
