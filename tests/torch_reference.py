"""The reference selection applied to torch tensors, for the torch checks under horovodrun and torchrun."""

from __future__ import annotations

import numpy as np
import torch

from horovod_distq.compressor import DistQCompressor
from horovod_distq.torch import sparsify
from tests import reference


def selected_part(tensor: torch.Tensor, compression: DistQCompressor, ratio: float | None = None) -> torch.Tensor:
    """Dense tensor holding what the reference rule selects from ``tensor`` (as decoded), zeros elsewhere.

    ``ratio``: the ratio the fit ran at (the closed loop's, when it is on); the target by default.
    """
    fitted = sparsify(tensor, ratio or compression.config.ratio, compression.config.distribution)
    flat = tensor.reshape(-1).numpy()
    mask = reference.selection_mask(flat, float(fitted.center), float(fitted.threshold))
    dense = np.zeros_like(flat)
    dense[mask] = reference.decoded_values(flat[mask], compression.config.value_encoding)
    return torch.from_numpy(dense).view_as(tensor)
