"""PyTorch frontend of horovod-distq.

Example:
    >>> import horovod.torch as hvd
    >>> import horovod_distq.torch as distq
    >>> hvd.init()
    >>> opt = hvd.DistributedOptimizer(opt, named_parameters=model.named_parameters(),
    ...                                compression=distq.DistQ(ratio=0.001))
"""

from horovod_distq.selection import SparseSelection
from horovod_distq.torch.compressor import DistQ
from horovod_distq.torch.control import RatioController
from horovod_distq.torch.error_feedback import ErrorFeedback
from horovod_distq.torch.local_adam import move_adam
from horovod_distq.torch.momentum import move_momentum
from horovod_distq.torch.ops import sparsify

__all__ = ["DistQ", "ErrorFeedback", "RatioController", "SparseSelection", "move_adam", "move_momentum", "sparsify"]
