"""Plain NumPy/SciPy reference of the fits, thresholds and selection rule (design.md section 3).

Written independently of the C++ core: SciPy's distributions give the quantiles, NumPy the
statistics, and the selection mask is a vectorised comparison.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def strided_sample(x: np.ndarray, sample_size: int) -> np.ndarray:
    """x.flat[i * stride] for i < m, m = min(n, sample_size), stride = n // m; finite values only."""
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    m = min(flat.size, sample_size)
    if m == 0:
        return flat[:0]
    sample = flat[:: flat.size // m][:m]
    return sample[np.isfinite(sample)]


def fit(x: np.ndarray, family: str, ratio: float, dof: float | None = None, sample_size: int = 4096):
    """Returns (center, threshold) of ``family`` fitted to the finite entries of x."""
    values = np.asarray(x, dtype=np.float64).reshape(-1)
    finite = values[np.isfinite(values)]
    sample = strided_sample(values, sample_size)
    if family == "normal":
        return finite.mean(), stats.norm.isf(ratio / 2, scale=finite.std())
    if family == "laplace":
        center = np.quantile(sample, 0.5)
        return center, stats.laplace.isf(ratio / 2, scale=np.mean(np.abs(finite - center)))
    if family == "cauchy":
        q25, center, q75 = np.quantile(sample, [0.25, 0.5, 0.75])
        return center, stats.cauchy.isf(ratio / 2, scale=(q75 - q25) / 2)
    if family == "student_t":
        if dof is None:
            excess = stats.kurtosis(finite, fisher=True, bias=True)
            dof = 4 + 6 / excess if excess > 0 else np.inf
        if np.isinf(dof):
            return finite.mean(), stats.norm.isf(ratio / 2, scale=finite.std())
        scale = np.sqrt(finite.var() * (dof - 2) / dof)
        return finite.mean(), stats.t.isf(ratio / 2, dof, scale=scale)
    if family == "exponential":
        return 0.0, stats.expon.isf(ratio, scale=np.mean(np.abs(finite)))
    raise ValueError(family)


def selection_mask(x: np.ndarray, center: float, threshold: float) -> np.ndarray:
    """x != 0 and not |x - center| < threshold, in x's dtype (float32 or float64)."""
    dtype = x.dtype.type
    with np.errstate(invalid="ignore"):
        return (x != 0) & ~(np.abs(x - dtype(center)) < dtype(threshold))
