"""The registration of the torch ops (torch.ops.distq.*): schemas, fake kernels, opcheck, torch.compile.

What the ops compute is tested against the reference in test_sparsify.py and test_control.py; here,
that each op is registered so torch's tracing and compilation see what the kernel does.
"""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv

from horovod_distq.torch import _library  # noqa: F401  (registers torch.ops.distq)

# The ops have no autograd formula (their outputs are selections and statistics, not differentiable), so
# no input requires grad: opcheck then skips test_autograd_registration by itself, and
# test_aot_dispatch_dynamic checks the forward only. Every default check runs.
OPCHECK_UTILS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


def gradient_like(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Student-t(4) values scaled to 1e-3, heavy-tailed as real gradients are."""
    generator = torch.Generator().manual_seed(seed)
    normal = torch.randn(shape, generator=generator, dtype=torch.float64)
    chi2_over_dof = torch.randn((4, *shape), generator=generator, dtype=torch.float64).pow(2).mean(0)
    return (1e-3 * normal / chi2_over_dof.sqrt()).to(dtype)


def sparsify_cases() -> list:
    """(x, ratio, distribution, dof, sample_size, stages), one per dtype, family and layout that matter."""
    transposed = gradient_like((96, 64), torch.float32, seed=5).t()  # non-contiguous
    strided = gradient_like((8192,), torch.float64, seed=6)[::2]  # non-contiguous
    cases = [
        ("float32-normal", gradient_like((4096,), torch.float32), 0.01, "normal", 0.0, 4096, 1),
        ("float64-laplace", gradient_like((64, 64), torch.float64, seed=1), 0.01, "laplace", 0.0, 4096, 1),
        ("float16-cauchy", gradient_like((4096,), torch.float16, seed=2), 0.01, "cauchy", 0.0, 512, 1),
        ("bfloat16-student_t", gradient_like((4096,), torch.bfloat16, seed=3), 0.01, "student_t", 5.0, 4096, 2),
        ("float32-auto-3-stages", gradient_like((8192,), torch.float32, seed=4), 0.001, "auto", 0.0, 4096, 3),
        ("float32-transposed", transposed, 0.01, "normal", 0.0, 4096, 1),
        ("float64-strided-auto", strided, 0.01, "auto", 0.0, 4096, 3),
        ("float32-empty", torch.empty(0), 0.01, "normal", 0.0, 4096, 1),
        ("float32-0d", torch.tensor(1.0), 0.5, "normal", 0.0, 4096, 1),
    ]
    return [pytest.param(*case[1:], id=case[0]) for case in cases]


SPARSIFY_CASES = sparsify_cases()


@pytest.mark.parametrize(("x", "ratio", "distribution", "dof", "sample_size", "stages"), SPARSIFY_CASES)
def test_sparsify_opcheck(x, ratio, distribution, dof, sample_size, stages) -> None:
    torch.library.opcheck(
        torch.ops.distq.sparsify.default, (x, ratio, distribution, dof, sample_size, stages), test_utils=OPCHECK_UTILS
    )


@pytest.mark.parametrize("target", [0.001, 0.5])
def test_initial_loop_opcheck(target: float) -> None:
    # A fresh state holds NaN ("no step recorded yet"), and test_aot_dispatch_dynamic compares eager and
    # AOT outputs with assert_close without equal_nan, so it fails on equal outputs. The same tracing
    # (functionalization and AOT dispatch, static and dynamic) is checked, NaN-aware, in
    # test_compiles_with_the_ops.
    utils = tuple(u for u in OPCHECK_UTILS if u != "test_aot_dispatch_dynamic")
    torch.library.opcheck(torch.ops.distq.initial_loop_state.default, (target,), test_utils=utils)


@pytest.mark.parametrize(("selected", "numel"), [(10, 10_000), (0, 1000), (1000, 1000)])
def test_update_loop_opcheck(selected: int, numel: int) -> None:
    state = torch.ops.distq.initial_loop_state(0.001)
    once = torch.ops.distq.update_loop_state(state, 3, 1000, 0.001)  # a state that has seen a step
    for s in (state, once):
        torch.library.opcheck(
            torch.ops.distq.update_loop_state.default, (s, selected, numel, 0.001), test_utils=OPCHECK_UTILS
        )


def metadata(t: torch.Tensor) -> tuple:
    return t.shape, t.stride(), t.dtype, t.device


@pytest.mark.parametrize(("x", "ratio", "distribution", "dof", "sample_size", "stages"), SPARSIFY_CASES)
def test_sparsify_fake_matches_real(x, ratio, distribution, dof, sample_size, stages) -> None:
    real = torch.ops.distq.sparsify(x, ratio, distribution, dof, sample_size, stages)
    shape_env = ShapeEnv()
    with FakeTensorMode(shape_env=shape_env) as mode:
        fake = torch.ops.distq.sparsify(mode.from_tensor(x), ratio, distribution, dof, sample_size, stages)
    # The number selected is data-dependent: one unbacked size, shared by indices and values.
    k = fake[0].shape[0]
    assert isinstance(k, torch.SymInt) and str(k).startswith("u"), k
    assert str(fake[1].shape[0]) == str(k)
    for f, r in zip(fake[:2], real[:2]):
        assert (f.dim(), f.dtype, f.device) == (r.dim(), r.dtype, r.device)
    for f, r in zip(fake[2:], real[2:]):
        assert metadata(f) == metadata(r)


def test_sparsify_fake_indices_are_int64_from_2_31_entries() -> None:
    # A fake tensor allocates nothing, so the int64 side of the rule is checked without 4 GiB of input.
    with FakeTensorMode(shape_env=ShapeEnv()):
        for numel, index_dtype in ((2**31 - 1, torch.int32), (2**31, torch.int64)):
            indices, values, threshold, _ = torch.ops.distq.sparsify(
                torch.empty(numel, dtype=torch.float16), 0.001, "normal", 0.0, 4096, 1
            )
            assert indices.dtype == index_dtype
            assert values.dtype == torch.float16
            assert threshold.dtype == torch.float32


def test_fake_kernels_reject_what_the_kernels_reject() -> None:
    with FakeTensorMode(shape_env=ShapeEnv()):
        with pytest.raises(RuntimeError, match="float32, float64, float16 or bfloat16"):
            torch.ops.distq.sparsify(torch.empty(8, dtype=torch.int32), 0.1, "normal", 0.0, 4096, 1)
        with pytest.raises(RuntimeError, match="4 float64 values"):
            torch.ops.distq.update_loop_state(torch.empty(4), 1, 10, 0.1)


def test_loop_fakes_match_real() -> None:
    state = torch.ops.distq.initial_loop_state(0.01)
    updated = torch.ops.distq.update_loop_state(state, 5, 1000, 0.01)
    with FakeTensorMode() as mode:
        fake_state = torch.ops.distq.initial_loop_state(0.01)
        fake_updated = torch.ops.distq.update_loop_state(mode.from_tensor(state), 5, 1000, 0.01)
    for fake, real in ((fake_state, state), (fake_updated, updated)):
        assert metadata(fake) == metadata(real)


@pytest.mark.parametrize("dynamic", [False, True])
def test_compiles_with_the_ops(dynamic: bool) -> None:
    # fullgraph: no graph break, so every op is traced through its fake kernel, the selection's
    # data-dependent size included (which needs capture_dynamic_output_shape_ops), and run through
    # AOT dispatch and functionalization (the aot_eager backend).
    def step(x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        indices, values, threshold, center = torch.ops.distq.sparsify(x, 0.01, "auto", 0.0, 4096, 3)
        # update_loop_state's counts are `int` in the schema, not SymInt: constants here, not indices.shape[0].
        updated = torch.ops.distq.update_loop_state(state, 40, 4096, 0.01)
        return indices.long() * 2, values, threshold, center, updated, torch.ops.distq.initial_loop_state(0.01)

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    state = torch.ops.distq.initial_loop_state(0.01)
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        for seed, n in ((0, 4096), (1, 6000)):
            x = gradient_like((n,), torch.float32, seed=seed)
            # A fresh loop state holds NaN by design ("no step recorded yet").
            torch.testing.assert_close(compiled(x, state), step(x, state), rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize(("x", "ratio", "distribution", "dof", "sample_size", "stages"), SPARSIFY_CASES)
@pytest.mark.parametrize("capacity", [-1, 3])
def test_sparsify_padded_opcheck(x, ratio, distribution, dof, sample_size, stages, capacity) -> None:
    torch.library.opcheck(
        torch.ops.distq.sparsify_padded.default, (x, ratio, distribution, dof, sample_size, stages, capacity),
        test_utils=OPCHECK_UTILS,
    )


@pytest.mark.parametrize(("x", "ratio", "distribution", "dof", "sample_size", "stages"), SPARSIFY_CASES)
def test_a_pending_selection_resolves_to_the_exact_one(x, ratio, distribution, dof, sample_size, stages) -> None:
    """sparsify_pending's room holds the exact selection's entries, its count on the tensor's
    device; resolved with that count (given too little room, by running it again) it is the
    selection sparsify returns, bit for bit."""
    from horovod_distq.torch import ops

    family = {"dof": dof} if distribution == "student_t" else {}
    exact = ops.sparsify(x, ratio, distribution, stages=stages, sample_size=sample_size, **family)
    for capacity in (-1, 1):
        pending = ops.sparsify_pending(x, ratio, distribution, stages=stages, sample_size=sample_size,
                                       capacity=capacity, **family)
        assert pending.count.dtype == torch.int64 and pending.count.dim() == 0
        (selected,) = ops.read_counts([pending.count])
        assert selected == exact.indices.numel()
        resolved = pending.resolve(selected)
        for got, expected in zip(resolved, exact):
            assert got.dtype == expected.dtype and torch.equal(got.view(-1).view(torch.uint8),
                                                                expected.view(-1).view(torch.uint8))


def test_the_default_room_follows_the_first_stage() -> None:
    # csrc/core/sparsify.h selection_capacity: 1024 + 2 x what stage 1 fits at, at most every entry.
    x = gradient_like((100_000,), torch.float32)
    assert torch.ops.distq.sparsify_padded(x, 0.01, "normal", 0.0, 4096, 1, -1)[0].numel() == 1024 + 2000
    assert torch.ops.distq.sparsify_padded(x, 0.001, "auto", 0.0, 4096, 3, -1)[0].numel() == 1024 + 1600
    assert torch.ops.distq.sparsify_padded(x[:500], 0.01, "normal", 0.0, 4096, 1, -1)[0].numel() == 500
