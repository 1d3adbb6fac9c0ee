"""The device code (csrc/core/cuda/), built for Thrust's OpenMP backend, against the CPU core.

Both run in one library (tests/device/backends.cpp) on the same input. Their sums are added in a
different order and precision (the device in double, the host in the compute type, spilled into
double), so thresholds agree to the statistics' rounding: each is within 1e-5 of the exact fit
(tests/unit/test_sparsify.py checks the host's against SciPy), so within 2e-5 of each other, and
the selections agree but for entries within that rounding of the threshold. The values are the
tensor's own bits in both.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import pytest

import horovod_distq
from tests import reference
from tests.device import library

CPU, DEVICE = 0, 1
DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.float16): 2, np.dtype(ml_dtypes.bfloat16): 3}
FAMILIES = list(horovod_distq.FAMILIES)
RTOL = 2e-5


@dataclass
class Result:
    indices: np.ndarray
    values: np.ndarray
    count: int
    center: float
    threshold: float


def sparsify(device: int, x: np.ndarray, family: str, ratio: float, stages: int = 1, *, dof: float = 0.0,
             sample_size: int = 4096, capacity: int | None = None, loop_state: np.ndarray | None = None) -> Result:
    """One side's sparsify of x; ``capacity`` entries of room (default: every entry)."""
    x = np.ascontiguousarray(x)
    n = x.size
    capacity = n if capacity is None else capacity
    indices = np.full(capacity + 1, -7, dtype=np.int32 if n < 2**31 else np.int64)  # one guard entry
    values = np.zeros(capacity + 1, dtype=x.dtype)
    count = np.zeros(1, dtype=np.int64)
    center_threshold = np.zeros(2, dtype=np.float64)
    message = ctypes.create_string_buffer(512)
    state = None if loop_state is None else loop_state.ctypes.data
    failed = library.load().distq_test_sparsify(device, x.ctypes.data, n, DTYPES[x.dtype], family.encode(), ratio, dof,
                                                sample_size, stages, state, capacity, indices.ctypes.data,
                                                values.ctypes.data, count.ctypes.data, center_threshold.ctypes.data,
                                                message, len(message))
    if failed:
        raise ValueError(message.value.decode())
    assert indices[capacity] == -7, "a selection wrote past its capacity"
    k = int(count[0])
    kept = min(k, capacity)
    return Result(indices[:kept], values[:kept], k, float(center_threshold[0]), float(center_threshold[1]))


def compute_view(x: np.ndarray) -> np.ndarray:
    """x in the type the kernels compare in (float64 stays, narrower types become float32)."""
    return x.astype(np.float64 if x.dtype == np.float64 else np.float32).reshape(-1)


def assert_same_selection(x: np.ndarray, family: str, ratio: float, stages: int = 1, **settings) -> Result:
    cpu = sparsify(CPU, x, family, ratio, stages, **settings)
    device = sparsify(DEVICE, x, family, ratio, stages, **settings)
    if np.isnan(cpu.threshold):
        assert np.isnan(device.threshold)
    else:
        assert device.threshold == pytest.approx(cpu.threshold, rel=RTOL)
    spread = abs(cpu.threshold) if np.isfinite(cpu.threshold) else 1.0
    assert device.center == pytest.approx(cpu.center, rel=RTOL, abs=RTOL * spread)
    values = compute_view(x)
    disagree = np.setxor1d(cpu.indices, device.indices)
    # Only entries that the rounding of the two thresholds can put on either side may differ.
    distance = np.abs(np.abs(values[disagree] - cpu.center) - cpu.threshold)
    assert np.all(distance <= 4 * RTOL * spread), f"{disagree.size} entries differ, beyond rounding"
    assert disagree.size <= max(2, 1e-3 * cpu.count)
    assert np.all(np.diff(device.indices) > 0), "device indices are not in index order"
    bits = f"u{x.dtype.itemsize}"
    np.testing.assert_array_equal(device.values.view(bits), x.reshape(-1)[device.indices].view(bits))
    assert library.load().distq_test_outstanding_allocations() == 0, "device scratch was not given back"
    return device


@pytest.mark.parametrize("dtype", list(DTYPES), ids=str)
@pytest.mark.parametrize("stages", [1, 2, 3])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_dtype_and_stage_count(family: str, stages: int, dtype: np.dtype) -> None:
    x = reference.gradient_like(1 << 16, seed=stages).astype(dtype)
    for ratio in [0.1, 0.01, 0.001, 0.0001]:
        assert_same_selection(x, family, ratio, stages)


@pytest.mark.parametrize("family", ["auto", "normal", "gamma", "cauchy"])
def test_two_to_the_24_entries(family: str) -> None:
    x = reference.gradient_like(1 << 24, dtype="float32", seed=11)
    for ratio in [0.01, 0.001]:
        result = assert_same_selection(x, family, ratio, stages=3 if family == "auto" else 1)
        if family == "auto":  # the tail stages take the count to the target on these heavy tails
            assert 0.7 * ratio * x.size < result.count < 1.5 * ratio * x.size


@pytest.mark.parametrize("family", FAMILIES)
def test_nonfinite_entries_are_always_kept(family: str) -> None:
    x = reference.gradient_like(1 << 16, dtype="float32", seed=4)
    x[[5, 900, 40_000]] = [np.nan, np.inf, -np.inf]
    for stages in [1, 3]:
        result = assert_same_selection(x, family, 0.001, stages)
        assert {5, 900, 40_000} <= set(result.indices.tolist())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", ["empty", "one", "zeros", "all_nan", "constant", "mostly_zero"])
def test_degenerate_inputs(family: str, case: str) -> None:
    x = {
        "empty": np.zeros(0, np.float32),
        "one": np.array([0.25], np.float32),
        "zeros": np.zeros(1000, np.float32),
        "all_nan": np.full(1000, np.nan, np.float32),
        "constant": np.full(1000, 0.5, np.float32),
        "mostly_zero": np.where(np.arange(50_000) % 10 == 0, reference.gradient_like(50_000, "float32", 2), 0)
        .astype(np.float32),
    }[case]
    for stages in [1, 3]:
        result = assert_same_selection(x, family, 0.01, stages)
        if case in ("empty", "zeros"):
            assert result.count == 0
        if case == "all_nan":
            assert result.count == x.size


def test_a_selection_past_its_capacity_reports_its_count() -> None:
    x = reference.gradient_like(1 << 16, dtype="float32", seed=8)
    for stages in [1, 3]:
        full = sparsify(DEVICE, x, "auto", 0.01, stages)
        short = sparsify(DEVICE, x, "auto", 0.01, stages, capacity=full.count // 2)
        assert short.count >= full.count > full.count // 2
        again = sparsify(DEVICE, x, "auto", 0.01, stages, capacity=short.count)
        np.testing.assert_array_equal(again.indices, full.indices)
        assert again.threshold == full.threshold


def test_the_ratio_comes_from_the_loop_state_on_the_device() -> None:
    x = reference.gradient_like(1 << 16, dtype="float32", seed=9)
    state = np.array([np.log(0.003), np.nan, np.nan, 1.0])
    from_state = sparsify(DEVICE, x, "auto", 0.5, 3, loop_state=state)
    given = sparsify(DEVICE, x, "auto", float(np.exp(state[0])), 3)
    np.testing.assert_array_equal(from_state.indices, given.indices)
    cpu = sparsify(CPU, x, "auto", 0.5, 3, loop_state=state)
    assert from_state.threshold == pytest.approx(cpu.threshold, rel=RTOL)


def test_loop_step_on_the_device_is_the_hosts() -> None:
    import torch

    from horovod_distq.torch import ops  # the CPU kernel of the same step

    state = ops.initial_loop_state(0.01).numpy().copy()
    for selected in [3, 700, 0, 120, 95]:
        expected = ops.update_loop_state(torch.from_numpy(state.copy()), selected, 10_000, 0.01).numpy()
        count = np.array([selected], dtype=np.int64)
        library.load().distq_test_update_loop(state.ctypes.data, count.ctypes.data, 10_000, 0.01)
        np.testing.assert_array_equal(state, expected)


def test_settings_are_validated() -> None:
    x = np.ones(10, np.float32)
    with pytest.raises(ValueError, match="ratio must be in"):
        sparsify(DEVICE, x, "normal", 0.0)
    with pytest.raises(ValueError, match="stages must be"):
        sparsify(DEVICE, x, "normal", 0.1, stages=0)
    with pytest.raises(ValueError, match="unknown distribution"):
        sparsify(DEVICE, x, "uniform", 0.1)
