"""Loads the compiled custom-op library, with a readable error when it does not fit this torch."""

import torch

from horovod_distq._build import compiled_library

torch.ops.load_library(compiled_library("_torch_ops", "torch", torch.__version__))
