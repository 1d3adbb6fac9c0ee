"""What ``sparsify`` returns and how it selects, stated once for both frontends.

``sparsify(tensor, ratio, distribution, *, stages=None, sample_size=4096, **family_params)`` fits
the family to the finite entries of the tensor, turns its quantile at ``ratio`` into a threshold,
and selects in one pass exactly the entries ``x`` with ``x != 0 and not abs(x - center) < threshold``
(compared in float32, or float64 for float64 tensors), so NaN and Inf are always selected and zeros
never are. It is a pure function: it keeps no history.

With ``stages > 1`` the threshold is refined by peaks over threshold (SIDCo): stage 1 fits the
tensor at ``min(ratio ** (1 / stages), 8 * ratio)`` (at ``ratio ** (1 / stages)`` if that kept fewer
than the target); each later stage fits the family, folded at 0, to the excesses of the entries
still selected over the current threshold, at the ratio that takes their count to the target in the
stages left, and raises the threshold by that quantile. The result is still exactly the entries
beyond the final threshold.

Arguments (both frontends):
    tensor: float32, float64, float16 or bfloat16 tensor of any shape and layout.
    ratio: target fraction of entries to select, in (0, 1].
    distribution: a family of ``horovod_distq.FAMILIES``.
    stages: peaks-over-threshold stages, 1 to 16 (1 = a single fit); None: 3 for ``auto``, else 1.
    sample_size: strided sample size for medians and quartiles (laplace, cauchy).
    **family_params: the family's parameters (``dof`` for ``student_t``).
"""

from __future__ import annotations

from typing import Any, NamedTuple


class SparseSelection(NamedTuple):
    """Entries of a tensor beyond a fitted threshold.

    Attributes:
        indices: flattened (row-major) positions, int32 when numel < 2^31, else int64.
        values: the entries at those positions, in the tensor's dtype.
        threshold: scalar tensor, float64 for float64 input and float32 otherwise.
        center: scalar tensor of the same dtype; 0 for magnitude families.
    """

    indices: Any
    values: Any
    threshold: Any
    center: Any
