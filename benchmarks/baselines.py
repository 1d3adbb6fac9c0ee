"""What published systems do instead, measured beside distq."""

from __future__ import annotations

import math

import torch

from horovod_distq.torch import DistQ, SparseSelection


def torch_normal_fit(x: torch.Tensor, ratio: float) -> SparseSelection:
    """The normal-fit selection in plain torch ops (mean, std, compare, nonzero), as GaussianK and
    SIDCo ship it."""
    flat = x.reshape(-1)
    center = flat.mean()
    threshold = flat.std(correction=0) * math.sqrt(2.0) * torch.erfinv(torch.tensor(1.0 - ratio))
    indices = ((flat - center).abs() >= threshold).nonzero().view(-1)
    return SparseSelection(indices, flat[indices], threshold, center)


def torch_topk(x: torch.Tensor, ratio: float) -> SparseSelection:
    """Exact top-k by magnitude with ``torch.topk``, as GRACE and DGC ship it."""
    flat = x.reshape(-1)
    k = max(1, int(ratio * flat.numel()))
    magnitudes, indices = torch.topk(flat.abs(), k, sorted=False)
    return SparseSelection(indices.int(), flat[indices], magnitudes.min(), torch.zeros((), dtype=flat.dtype))


class TopK(DistQ):
    """DistQ's exchange and error feedback with an exact ``torch.topk`` selection instead of a fit
    (exact counts need no closed loop), sent sparse by the allgather unless ``exchange`` says otherwise."""

    def __init__(self, ratio: float, **kwargs) -> None:
        super().__init__(ratio, closed_loop=False, **{"exchange": "sparse", **kwargs})

    def select(self, tensor: torch.Tensor, ratio: float) -> SparseSelection:
        return torch_topk(tensor, ratio)
