"""Plain NumPy/SciPy reference of the fits, thresholds and selection rule (docs/design.md, section 3).

Written independently of the C++ core: SciPy's distributions give the quantiles, NumPy the
statistics, and the selection mask is a vectorised comparison.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_dtypes
import numpy as np
from scipy import stats

from horovod_distq.families import DEFAULT_SAMPLE_SIZE


def gradient_like(n: int, dtype: str = "float64", seed: int = 0) -> np.ndarray:
    """Heavy-tailed, slightly off-centre values, as real gradients are, rounded to ``dtype``."""
    values = 1e-3 * np.random.default_rng(seed).standard_t(4, size=n) + 1e-5
    return values.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)


def strided_sample(x: np.ndarray, sample_size: int) -> np.ndarray:
    """x.flat[i * n // m] for i < m, m = min(n, sample_size); finite values only."""
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    m = min(flat.size, sample_size)
    if m == 0:
        return flat[:0]
    sample = flat[(np.arange(m, dtype=np.int64) * flat.size) // m]
    return sample[np.isfinite(sample)]


def fit(x: np.ndarray, family: str, ratio: float, dof: float | None = None, sample_size: int = DEFAULT_SAMPLE_SIZE,
        folded: bool = False):
    """Returns (center, threshold) of ``family`` fitted to the finite entries of x.

    ``folded``: x are magnitudes and the family is folded at 0 (centre 0, scale about 0), as the
    later peaks-over-threshold stages fit it.
    """
    values = np.asarray(x, dtype=np.float64).reshape(-1)
    finite = values[np.isfinite(values)]
    sample = strided_sample(values, sample_size)
    if folded:
        return 0.0, _folded_threshold(finite, sample, family, ratio, dof)
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
    if family == "gamma":
        magnitudes = np.abs(finite[finite != 0])
        s = np.log(magnitudes.mean()) - np.log(magnitudes).mean()
        shape = (3 - s + np.sqrt((s - 3) ** 2 + 24 * s)) / (12 * s)
        tail = min(1.0, ratio * finite.size / magnitudes.size)
        return 0.0, stats.gamma.isf(tail, shape, scale=magnitudes.mean() / shape)
    if family == "gpareto":
        magnitudes = np.abs(finite)
        r = magnitudes.mean() ** 2 / magnitudes.var()
        return 0.0, stats.genpareto.isf(ratio, (1 - r) / 2, scale=magnitudes.mean() * (r + 1) / 2)
    raise ValueError(family)


def _folded_threshold(e: np.ndarray, sample: np.ndarray, family: str, ratio: float, dof: float | None) -> float:
    """Threshold of the family folded at 0 fitted to magnitudes e: P(|X| >= t) = ratio."""
    if family == "normal":
        return stats.norm.isf(ratio / 2, scale=np.sqrt(np.mean(e**2)))
    if family == "laplace":
        return stats.laplace.isf(ratio / 2, scale=np.mean(e))
    if family == "cauchy":
        return stats.cauchy.isf(ratio / 2, scale=np.quantile(sample, 0.5))
    if family == "student_t":
        variance = np.mean(e**2)
        if dof is None:
            excess = np.mean(e**4) / variance**2 - 3
            dof = 4 + 6 / excess if excess > 0 else np.inf
        if np.isinf(dof):
            return stats.norm.isf(ratio / 2, scale=np.sqrt(variance))
        return stats.t.isf(ratio / 2, dof, scale=np.sqrt(variance * (dof - 2) / dof))
    return fit(e, family, ratio, sample_size=sample.size)[1]


def multi_stage(x: np.ndarray, family: str, ratio: float, stages: int, dof: float | None = None,
                sample_size: int = DEFAULT_SAMPLE_SIZE) -> tuple[float, float]:
    """Peaks over threshold, as sparsify(stages=...) documents it: (center, final threshold)."""
    compute = x.dtype.type
    body, tail = ("student_t", "gpareto") if family == "auto" else (family, family)
    widest = ratio ** (1 / stages)
    first = min(widest, 8 * ratio)
    center, threshold = fit(x, body, first, dof, sample_size)
    center, threshold = float(compute(center)), float(compute(threshold))
    flat = x.reshape(-1)
    target = ratio * flat.size
    if stages > 1 and selection_mask(flat, center, threshold).sum() < target and first < widest:
        threshold = float(compute(fit(x, body, widest, dof, sample_size)[1]))
    for left in range(stages - 1, 0, -1):
        kept = flat[selection_mask(flat, center, threshold)]
        if kept.size <= target:
            break
        excess = np.abs(kept.astype(np.float64) - center) - threshold
        excess = excess[np.isfinite(excess)]
        _, step = fit(excess, tail, (target / kept.size) ** (1 / left), dof, sample_size, folded=True)
        if not step > 0:
            break
        threshold = float(compute(threshold + step))
    return center, threshold


def selection_mask(x: np.ndarray, center: float, threshold: float) -> np.ndarray:
    """x != 0 and not |x - center| < threshold, in x's dtype (float32 or float64)."""
    dtype = x.dtype.type
    with np.errstate(invalid="ignore"):
        return (x != 0) & ~(np.abs(x - dtype(center)) < dtype(threshold))


def decoded_values(values: np.ndarray, encoding: str) -> np.ndarray:
    """What receivers decode from selected float32 values under a value encoding."""
    if encoding in ("auto", "float32"):
        return values
    if encoding == "float16":
        return values.astype(np.float16).astype(np.float32)
    if encoding == "bfloat16":
        return values.astype(ml_dtypes.bfloat16).astype(np.float32)
    positive = values > 0
    scale_pos = np.abs(values[positive]).mean() if positive.any() else 0.0
    scale_neg = np.abs(values[~positive]).mean() if (~positive).any() else 0.0
    return np.where(positive, scale_pos, -scale_neg).astype(np.float32)


class MomentumCorrection:
    """Deep Gradient Compression's update for one rank (Lin et al., 2018, algorithm 1 with momentum
    correction and factor masking), in NumPy: per gradient a velocity ``u = m * u + g`` and an
    accumulation ``v = v + u``; the selected part of ``v`` is sent and both are cleared there.
    A gradient sent dense sends its velocity, kept whole.

    Args:
        momentum: m.
    """

    def __init__(self, momentum: float) -> None:
        self.momentum = np.float32(momentum)
        self.velocities: dict[str, np.ndarray] = {}
        self.accumulations: dict[str, np.ndarray] = {}

    def step(self, name: str, gradient: np.ndarray, select: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
        """What this rank sends of ``name`` this step: ``select(v)`` (a dense array with the sent
        values, zeros elsewhere), or with ``select=None`` (a dense gradient) the velocity."""
        velocity = self.momentum * self.velocities.get(name, np.zeros_like(gradient)) + gradient
        if select is None:
            self.velocities[name] = velocity
            return velocity
        accumulation = self.accumulations.get(name, np.zeros_like(gradient)) + velocity
        sent = select(accumulation)
        self.velocities[name] = np.where(sent != 0, 0, velocity)  # selections never hold zeros
        self.accumulations[name] = accumulation - sent  # what the encoding lost stays
        return sent


class LocalAdamReference:
    """Local Adam for one rank, in NumPy (float64 moments): per gradient Adam's moments of this
    rank's gradients, ``m = b1 m + (1 - b1) g`` and ``v = b2 v + (1 - b2) g^2``, and its direction
    ``d = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``, which error feedback accumulates; the
    selected part of the accumulation is sent. A gradient sent dense sends its direction.
    Nothing is masked: the moments are the rank's own, whatever was sent.

    Args:
        beta1, beta2, eps: Adam's settings.
    """

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.moments: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
        self.accumulations: dict[str, np.ndarray] = {}

    def step(self, name: str, gradient: np.ndarray, select: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
        """What this rank sends of ``name`` this step: ``select(accumulation)`` (float32, the sent
        values in place, zeros elsewhere), or with ``select=None`` (a dense gradient) the direction."""
        g = gradient.astype(np.float64)
        m, v, t = self.moments.get(name, (np.zeros_like(g), np.zeros_like(g), 0))
        m, v, t = self.beta1 * m + (1 - self.beta1) * g, self.beta2 * v + (1 - self.beta2) * g * g, t + 1
        self.moments[name] = (m, v, t)
        direction = ((m / (1 - self.beta1**t)) / (np.sqrt(v / (1 - self.beta2**t)) + self.eps)).astype(np.float32)
        if select is None:
            return direction
        accumulation = self.accumulations.get(name, np.zeros_like(direction)) + direction
        sent = select(accumulation)
        self.accumulations[name] = accumulation - sent
        return sent
