"""horovod-distq: gradient sparsification by fitted-distribution thresholds for Horovod.

This package is the framework-neutral layer: the compressor's behaviour (``compressor``), its
configuration, the family and value-encoding registries, the exchange format (``wire``) and the
stats records. It imports neither torch nor TensorFlow; the frontends that supply the tensor
operations live in ``horovod_distq.torch`` and ``horovod_distq.tensorflow``.
"""

from horovod_distq.compressor import DistQCompressor
from horovod_distq.config import DistQConfig
from horovod_distq.encodings import VALUE_ENCODINGS, ValueEncoding, value_encoding
from horovod_distq.families import FAMILIES, FamilySpec, family_arguments
from horovod_distq.local_adam import LocalAdam
from horovod_distq.selection import SparseSelection
from horovod_distq.stats import TensorStats
from horovod_distq.warmup import Warmup
from horovod_distq.wire import DistQExchangeError

__version__ = "0.1.0"

__all__ = [
    "FAMILIES",
    "VALUE_ENCODINGS",
    "DistQCompressor",
    "DistQConfig",
    "DistQExchangeError",
    "FamilySpec",
    "LocalAdam",
    "SparseSelection",
    "TensorStats",
    "ValueEncoding",
    "Warmup",
    "__version__",
    "family_arguments",
    "value_encoding",
]
