"""DistQ and its error feedback in one process (Horovod size 1); the 2-worker checks are in tests/parallel."""

from __future__ import annotations

import threading
import warnings

import horovod.torch as hvd
import numpy as np
import pytest
import torch
from horovod.common.elastic import ObjectState

from horovod_distq import Warmup
from horovod_distq.config import DistQConfig
from horovod_distq.elastic import register
from horovod_distq.torch import DistQ, ErrorFeedback, sparsify
from horovod_distq.warmup import warmup_from
from tests.reference import MomentumCorrection


@pytest.fixture(scope="module", autouse=True)
def horovod() -> None:
    hvd.init()


def round_trip(compression: DistQ, gradient: torch.Tensor, name: str = "w") -> torch.Tensor:
    """What Horovod's optimizer does: compress, allreduce the result, decompress."""
    tensor, ctx = compression.compress(gradient, name=name)
    return compression.decompress(hvd.allreduce(tensor, op=hvd.Average, name=f"test.{name}"), ctx)


def selected_dense(tensor: torch.Tensor, ratio: float) -> torch.Tensor:
    """What DistQ with its default distribution sends of ``tensor`` at ``ratio``, as a dense tensor."""
    selection = sparsify(tensor, ratio, DistQConfig.distribution)
    dense = torch.zeros(tensor.numel(), dtype=tensor.dtype)
    dense[selection.indices.long()] = selection.values
    return dense.view_as(tensor)


def test_round_trip_returns_the_selection() -> None:
    gradient = torch.randn(64, 100)
    result = round_trip(DistQ(ratio=0.01, warmup=None, error_feedback=False), gradient)
    assert result.shape == gradient.shape and result.dtype == gradient.dtype
    assert torch.equal(result, selected_dense(gradient, 0.01))


def test_defaults_are_the_documented_ones() -> None:
    # README (API): auto with 3 stages, closed loop, error feedback, exchange and encoding "auto".
    config = DistQ(ratio=0.01).config
    assert (config.distribution, config.fit_stages) == ("auto", 3)
    assert (config.closed_loop, config.error_feedback) == (True, True)
    assert (config.exchange, config.value_encoding, config.min_numel, config.sample_size) == ("auto", "auto", 1024,
                                                                                              4096)
    assert (config.warmup, config.momentum, config.adam) == ("auto", 0.0, None)
    assert config.warmup_schedule == Warmup(steps=50, start_ratio=0.25, dense_steps=0)
    gradient = torch.distributions.StudentT(3.0).sample((20_000,))
    sent = round_trip(DistQ(ratio=0.01, error_feedback=False, closed_loop=False, warmup=None), gradient)
    assert torch.equal(sent, selected_dense(gradient, 0.01))
    assert torch.count_nonzero(sent) == sparsify(gradient, 0.01, "auto", stages=3).indices.numel()


def test_the_default_warmup_decays_from_a_quarter_to_the_ratio_in_50_steps() -> None:
    compression = DistQ(ratio=0.01, error_feedback=False, closed_loop=False)
    gradient = torch.distributions.StudentT(3.0).sample((20_000,))
    sent = [torch.count_nonzero(round_trip(compression, gradient)).item() for _ in range(52)]
    factors = compression.config.warmup_factors
    for step, ratio in ((0, 0.25), (25, 0.05), (50, 0.01), (51, 0.01)):
        assert 0.01 * factors[min(step, 50)] == pytest.approx(ratio)
        assert sent[step] == sparsify(gradient, 0.01 * factors[min(step, 50)], "auto", stages=3).indices.numel(), step
    assert sent[0] > 20 * sent[51]


def test_error_feedback_keeps_what_was_not_sent() -> None:
    compression = DistQ(ratio=0.01, warmup=None)
    first, second = torch.randn(2, 5000)
    sent = round_trip(compression, first)
    assert torch.equal(sent + compression.memory.residual("w"), first)
    accumulated = second + compression.memory.residual("w")
    fit_ratio = compression.controller.fit_ratio("w")  # the closed loop has moved it after step 1
    sent = round_trip(compression, second)
    assert torch.allclose(sent + compression.memory.residual("w"), accumulated)
    assert torch.equal(sent, selected_dense(accumulated, fit_ratio))


def test_stats_report_the_last_step() -> None:
    compression = DistQ(ratio=0.01, warmup=None)
    round_trip(compression, torch.randn(10_000), name="big")
    round_trip(compression, torch.randn(10), name="bias")
    big, bias = compression.stats["big"], compression.stats["bias"]
    assert big.selected == pytest.approx(100, rel=0.3)
    assert big.achieved_ratio == big.selected / 10_000
    assert big.bytes_sent == big.selected * 8 + 4 and big.dense_bytes == 40_000
    assert bias.dense and bias.bytes_sent == bias.dense_bytes == 40


def test_small_and_non_floating_tensors_go_dense() -> None:
    compression = DistQ(ratio=0.01, min_numel=100)
    for tensor in (torch.randn(99), torch.arange(1000)):
        out, ctx = compression.compress(tensor, name="t")
        assert out is tensor and ctx is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_gradients_keep_a_float32_residual(dtype: torch.dtype) -> None:
    compression = DistQ(ratio=0.05)
    gradient = torch.randn(4000).to(dtype)
    result = round_trip(compression, gradient)
    residual = compression.memory.residual("w")
    assert result.dtype == dtype and residual.dtype == torch.float32
    assert torch.equal(result.float() + residual, gradient.float())


def test_non_finite_entries_are_sent_and_do_not_poison_the_residual() -> None:
    compression = DistQ(ratio=0.01)
    gradient = torch.randn(5000)
    gradient[[3, 4]] = torch.tensor([float("nan"), float("inf")])
    result = round_trip(compression, gradient)
    assert torch.isnan(result[3]) and torch.isinf(result[4])
    assert torch.isfinite(compression.memory.residual("w")).all()


def test_shape_change_restarts_the_residual() -> None:
    compression = DistQ(ratio=0.01)
    round_trip(compression, torch.randn(5000))
    gradient = torch.randn(2000)
    with pytest.warns(UserWarning, match="starts afresh"):
        round_trip(compression, gradient)
    assert compression.memory.residual("w").shape == gradient.shape


@pytest.mark.parametrize("all_ranks", [False, True])
def test_state_dict_round_trip(all_ranks: bool) -> None:
    compression = DistQ(ratio=0.01)
    round_trip(compression, torch.randn(5000))
    restored = DistQ(ratio=0.01)
    restored.load_state_dict(compression.state_dict(all_ranks=all_ranks))
    assert torch.equal(restored.memory.residual("w"), compression.memory.residual("w"))
    assert restored.controller.fit_ratio("w") == compression.controller.fit_ratio("w") != 0.01


def test_closed_loop_reaches_the_target_on_a_mis_specified_family() -> None:
    # A normal fit on Student-t(3) tails keeps about 10x too many at 0.001, and its threshold grows
    # slowly as the fit ratio falls: the loop has to find a fit ratio near 1e-10.
    compression = DistQ(ratio=0.001, warmup=None, distribution="normal", error_feedback=False)
    torch.manual_seed(0)
    achieved = []
    for _ in range(10):
        gradient = torch.distributions.StudentT(3.0).sample((1_000_000,)) * torch.rand(1)
        round_trip(compression, gradient)
        achieved.append(compression.stats["w"].achieved_ratio / 0.001)
    assert achieved[0] > 3
    assert all(abs(a - 1) < 0.1 for a in achieved[5:]), achieved


def test_closed_loop_off_fits_at_the_target() -> None:
    compression = DistQ(ratio=0.001, warmup=None, error_feedback=False, closed_loop=False)
    gradient = torch.distributions.StudentT(3.0).sample((100_000,))
    first = round_trip(compression, gradient)
    assert torch.equal(round_trip(compression, gradient), first)


def test_error_feedback_needs_a_name_outside_horovods_optimizer() -> None:
    with pytest.raises(ValueError, match="needs a gradient name"):
        DistQ(ratio=0.01).compress(torch.randn(5000))


def test_adasum_is_refused() -> None:
    with pytest.raises(ValueError, match="Adasum"):
        DistQ(ratio=0.01).compress(torch.randn(5000, requires_grad=True), name="w")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ratio": 0}, "ratio"),
        ({"ratio": 2}, "ratio"),
        ({"ratio": True}, "ratio"),
        ({"ratio": 0.1, "distribution": "gauss"}, "unknown distribution"),
        ({"ratio": 0.1, "min_numel": -1}, "min_numel"),
        ({"ratio": 0.1, "sample_size": 0}, "sample_size"),
        ({"ratio": 0.1, "stages": 0}, "stages"),
        ({"ratio": 0.1, "distribution": "student_t", "dof": 1}, "dof"),
        ({"ratio": 0.1, "momentum": 1.0}, "momentum"),
        ({"ratio": 0.1, "momentum": -0.5}, "momentum"),
        ({"ratio": 0.1, "momentum": "0.9"}, "momentum"),
        ({"ratio": 0.1, "momentum": 0.9, "error_feedback": False}, "needs error_feedback=True"),
        ({"ratio": 0.1, "exchange": "two_phase", "momentum": 0.9}, "two_phase.*select again"),
        ({"ratio": 0.1, "exchange": "two_phase", "adam": True}, "two_phase.*select again"),
        ({"ratio": 0.1, "exchange": "two_phase", "value_encoding": "sign"}, "two_phase.*select again"),
    ],
)
def test_invalid_configuration(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DistQ(**kwargs)


def test_error_feedback_object_alone() -> None:
    memory = ErrorFeedback()
    gradient = torch.randn(100)
    accumulated = memory.accumulate("p", gradient)
    indices = torch.tensor([1, 5], dtype=torch.int32)
    memory.keep_unsent("p", indices, accumulated[[1, 5]], gradient[[1, 5]])
    expected = gradient.clone()
    expected[[1, 5]] = 0
    assert torch.equal(memory.residual("p"), expected)
    assert memory.residual("other") is None


@pytest.mark.parametrize("encoding", ["float32", "float16", "bfloat16", "sign"])
def test_encodings_keep_the_encoding_error_in_the_residual(encoding: str) -> None:
    compression = DistQ(ratio=0.02, warmup=None, value_encoding=encoding)
    gradient = torch.randn(5000)
    result = round_trip(compression, gradient)
    residual = compression.memory.residual("w")
    assert torch.allclose(result + residual, gradient, atol=1e-6)
    selected = sparsify(gradient, 0.02, DistQConfig.distribution).indices.long()
    assert torch.equal(torch.nonzero(result).view(-1), selected)
    stats = compression.stats["w"]
    value_bytes = {"float32": 4, "float16": 2, "bfloat16": 2, "sign": 0}[encoding]
    assert stats.bytes_sent == stats.selected * (4 + value_bytes) + (8 if encoding == "sign" else 0) + 4


def test_sign_encoding_sends_one_scale_per_sign() -> None:
    gradient = torch.randn(5000)
    result = round_trip(DistQ(ratio=0.02, warmup=None, value_encoding="sign", error_feedback=False), gradient)
    selected = sparsify(gradient, 0.02, DistQConfig.distribution)
    values = selected.values
    kept = result.view(-1)[selected.indices.long()]
    assert torch.allclose(kept[values > 0], values[values > 0].mean().expand(int((values > 0).sum())))
    assert torch.allclose(kept[values < 0], values[values < 0].mean().expand(int((values < 0).sum())))


def test_float16_encoding_clamps_finite_values_into_range() -> None:
    compression = DistQ(ratio=0.001, value_encoding="float16")
    gradient = torch.zeros(5000)
    gradient[7] = 1e6
    result = round_trip(compression, gradient)
    assert result[7] == 65504 and compression.memory.residual("w")[7] == 1e6 - 65504


def test_one_round_per_step_for_all_tensors() -> None:
    compression = DistQ(ratio=0.01, error_feedback=False)
    contexts = [compression.compress(torch.randn(2000), name=f"t{i}") for i in range(5)]
    for i, (tensor, ctx) in enumerate(contexts):
        compression.decompress(hvd.allreduce(tensor, name=f"round.{i}"), ctx)
    assert compression.last_round.tensors == 5
    assert compression.last_round.bytes_sent == 8 * 8 + sum(compression.stats[f"t{i}"].bytes_sent - 4 for i in range(5))


def test_unknown_encoding() -> None:
    with pytest.raises(ValueError, match="unknown value_encoding"):
        DistQ(ratio=0.01, value_encoding="int8")


def test_a_subclass_may_select_otherwise() -> None:
    """The benchmarks' exact top-k baseline replaces the fit through ``select``, nothing else."""
    from benchmarks.baselines import TopK

    gradient = torch.randn(10_000)
    result = round_trip(TopK(ratio=0.01, error_feedback=False, warmup=None), gradient)
    expected = torch.zeros_like(gradient)
    top = gradient.abs().topk(100).indices
    expected[top] = gradient[top]
    assert torch.equal(result, expected)


def test_stages_are_bounded_and_numpy_ratios_accepted() -> None:
    for stages in (0, 17, 2**63, True):
        with pytest.raises(ValueError, match="stages"):
            DistQ(ratio=0.01, stages=stages)
    compression = DistQ(ratio=np.float32(0.01), stages=16)
    assert type(compression.config.ratio) is float and compression.config.ratio == pytest.approx(0.01)
    round_trip(compression, torch.randn(5000))


def test_a_ratio_below_one_entry_warns_once_per_gradient() -> None:
    compression = DistQ(ratio=1e-9)
    with pytest.warns(UserWarning, match="below one entry"):
        round_trip(compression, torch.randn(5000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        round_trip(compression, torch.randn(5000))


def test_state_dict_is_a_snapshot_and_loads_all_or_nothing() -> None:
    compression = DistQ(ratio=0.01)
    round_trip(compression, torch.randn(5000))
    state = compression.state_dict()
    saved = state["error_feedback"]["residuals"]["w"].clone()
    round_trip(compression, torch.randn(5000))
    assert torch.equal(state["error_feedback"]["residuals"]["w"], saved)

    before = compression.memory.residual("w").clone()
    broken = {"error_feedback": state["error_feedback"], "closed_loop": {"target": 0.01, "loops": {"w": torch.ones(3)}}}
    for bad in ({"error_feedback": state["error_feedback"]}, broken, {"error_feedback": {}, "closed_loop": {}}):
        with pytest.raises(ValueError, match="DistQ"):
            compression.load_state_dict(bad)
        assert torch.equal(compression.memory.residual("w"), before)
    compression.load_state_dict(state)
    assert torch.equal(compression.memory.residual("w"), saved)


def test_a_second_training_thread_is_refused() -> None:
    compression = DistQ(ratio=0.01)
    round_trip(compression, torch.randn(5000))
    errors = []

    def other_loop() -> None:
        try:
            compression.compress(torch.randn(5000), name="v")
        except RuntimeError as error:
            errors.append(error)

    thread = threading.Thread(target=other_loop, name="second-loop")
    thread.start()
    thread.join()
    assert len(errors) == 1 and "one DistQ serves one training loop" in str(errors[0])


def test_unnamed_gradients_keep_one_state_per_gradient_of_a_step() -> None:
    # Without names (and without error feedback, which needs them) a gradient is known by its
    # place in the step: 30 steps of 2 gradients leave 2 closed-loop states, not 60.
    compression = DistQ(ratio=0.01, error_feedback=False)
    for _ in range(30):
        queued = [compression.compress(torch.randn(n)) for n in (5000, 3000)]
        for tensor, ctx in queued:
            compression.decompress(hvd.allreduce(tensor, op=hvd.Average), ctx)
    assert sorted(compression.controller.state_dict()["loops"]) == ["unnamed.0.5000", "unnamed.1.3000"]
    assert sorted(compression.stats) == ["unnamed.0.5000", "unnamed.1.3000"]


def test_an_all_ranks_state_of_another_world_size_is_refused() -> None:
    compression = DistQ(ratio=0.01)
    round_trip(compression, torch.randn(5000))
    state = compression.state_dict(all_ranks=True)
    assert list(state) == ["all_ranks"] and len(state["all_ranks"]) == hvd.size() == 1
    with pytest.raises(ValueError, match="saved by 2 ranks, loaded by 1"):
        compression.load_state_dict({"all_ranks": state["all_ranks"] * 2})


def test_a_state_for_another_ratio_restarts_the_closed_loop_only() -> None:
    compression = DistQ(ratio=0.01)
    round_trip(compression, torch.randn(5000))
    other = DistQ(ratio=0.05)
    other.load_state_dict(compression.state_dict())
    assert torch.equal(other.memory.residual("w"), compression.memory.residual("w"))
    assert other.controller.fit_ratio("w") == 0.05


def test_an_elastic_state_commits_and_restores_distq() -> None:
    compression = DistQ(ratio=0.01)
    round_trip(compression, torch.randn(5000))
    state = register(ObjectState(bcast_object=lambda value: value, get_rank=lambda: 0, step=0), compression)
    state.commit()
    committed = compression.memory.residual("w").clone()
    round_trip(compression, torch.randn(5000))
    compression.compress(torch.randn(5000), name="w")  # a step interrupted between compress and decompress
    state.restore()
    assert torch.equal(compression.memory.residual("w"), committed)
    round_trip(compression, torch.randn(5000))  # the interrupted step's pairs are gone: no "compressed twice"


def test_log_to_writes_the_last_steps_stats_to_tensorboard(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    compression = DistQ(ratio=0.01)
    with SummaryWriter(str(tmp_path)) as writer:
        for step in range(3):
            round_trip(compression, torch.randn(5000))
            written = compression.log_to(writer, step)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    stats = compression.stats["w"]
    for tag, expected in (("distq/w/selected", stats.selected), ("distq/w/achieved_ratio", stats.achieved_ratio),
                          ("distq/w/threshold", stats.threshold), ("distq/step/bytes_sent", compression.bytes_sent)):
        logged = events.Scalars(tag)
        assert [s.step for s in logged] == [0, 1, 2], tag
        assert logged[-1].value == pytest.approx(expected, rel=1e-6) == written[tag], tag
    assert written["distq/step/bytes_fraction"] == pytest.approx(compression.bytes_sent / (5000 * 4))


def test_a_device_without_a_kernel_is_served_through_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA has no kernel in this build: sparsify then runs on a host copy, warning once. Forced here
    on CPU tensors (every device but the CPU takes this path), the results are the direct path's."""
    from horovod_distq.torch import ops

    gradient = torch.randn(64, 100)
    direct = round_trip(DistQ(ratio=0.01), gradient)
    monkeypatch.setattr(ops, "_runs_on_host", lambda tensor: True)
    monkeypatch.setattr(ops, "_STAGED_DEVICE_TYPES", set())
    with pytest.warns(RuntimeWarning, match="copied to the host"):
        staged = round_trip(DistQ(ratio=0.01), gradient)
    assert torch.equal(staged, direct)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per device type
        ops.sparsify(gradient, 0.01)
    assert ops.has_kernel("cpu") and not ops.has_kernel("cuda")


def test_momentum_correction_is_deep_gradient_compressions_update() -> None:
    # One rank: what it sends each step is DGC's update re-done in NumPy, for a sparse gradient and
    # for a small one sent dense (its velocity).
    compression = DistQ(ratio=0.01, warmup=None, momentum=0.9, closed_loop=False)
    dgc = MomentumCorrection(0.9)
    torch.manual_seed(2)
    for _ in range(5):
        big, small = torch.randn(5000), torch.randn(10)
        expected = dgc.step("big", big.numpy(), lambda v: selected_dense(torch.from_numpy(v), 0.01).numpy())
        np.testing.assert_allclose(round_trip(compression, big, "big").numpy(), expected, rtol=1e-6, atol=1e-7)
        sent_small = compression.decompress(*compression.compress(small, name="small"))
        np.testing.assert_allclose(sent_small.numpy(), dgc.step("small", small.numpy(), None), rtol=1e-6)


def resumed_exactly(settings: dict, gradients: torch.Tensor, stop: int) -> tuple[DistQ, dict]:
    """Checks that a DistQ(**settings) loading the state of one trained on ``gradients[:stop]`` sends
    on the rest exactly what one trained on all of them without a break sends; returns the resumed
    DistQ and the state it loaded."""
    uninterrupted = DistQ(**settings)
    expected = [round_trip(uninterrupted, g) for g in gradients]
    before = DistQ(**settings)
    for gradient in gradients[:stop]:
        round_trip(before, gradient)
    state = before.state_dict()
    resumed = DistQ(**settings)
    resumed.load_state_dict(state)
    for gradient, sent in zip(gradients[stop:], expected[stop:]):
        assert torch.equal(round_trip(resumed, gradient), sent)
    return resumed, state


def test_momentum_correction_resumes_exactly() -> None:
    torch.manual_seed(3)
    resumed, state = resumed_exactly({"ratio": 0.01, "momentum": 0.9}, torch.randn(6, 5000), stop=3)
    assert set(state["error_feedback"]["velocities"]) == {"w"}
    with pytest.raises(ValueError, match="velocity"):
        resumed.load_state_dict({**state, "error_feedback": {"residuals": {}, "velocities": {"w": 3}}})


# The sparsity warm-up: its schedule (neutral), and DistQ following it (the TensorFlow twins are in
# test_tensorflow.py).

def test_the_schedule_decays_exponentially_to_the_target() -> None:
    warmup = Warmup(steps=4, start_ratio=0.25, dense_steps=2)
    expected = [1.0, 1.0, *(0.25 * (0.01 / 0.25) ** (np.arange(4) / 4))]
    np.testing.assert_allclose(warmup.ratios(0.01), expected, rtol=1e-12)
    np.testing.assert_allclose(warmup.factors(0.01), [r / 0.01 for r in expected] + [1.0], rtol=1e-12)
    assert warmup.length == 6
    # A start below the target starts at the target.
    assert Warmup(steps=2, start_ratio=0.001).ratios(0.01) == [0.01, 0.01]


@pytest.mark.parametrize("settings", [
    {"steps": -1}, {"steps": 2.5}, {"steps": True}, {"steps": 3, "start_ratio": 0}, {"steps": 3, "start_ratio": 1.5},
    {"steps": 3, "dense_steps": -2},
])
def test_invalid_schedules_are_refused(settings: dict) -> None:
    with pytest.raises(ValueError, match="Warmup"):
        Warmup(**settings)


def test_warmup_argument_forms() -> None:
    assert warmup_from(None) is None and warmup_from(0) is None and warmup_from(Warmup(steps=0)) is None
    assert warmup_from(50) == Warmup(steps=50) and warmup_from("auto") == "auto"
    # "auto": local Adam starts with 5 dense steps (its first directions are all about +-1); a
    # warm-up given is kept.
    assert DistQ(ratio=0.01, adam=True).config.warmup_schedule == Warmup(steps=50, dense_steps=5)
    assert DistQ(ratio=0.01, adam=True, warmup=20).config.warmup_schedule == Warmup(steps=20)
    assert DistQ(ratio=0.01, adam=True, warmup=None).config.warmup_schedule is None
    with pytest.raises(ValueError, match="warmup must be"):
        DistQ(ratio=0.01, warmup="slow")


def test_distq_fits_at_each_step_of_the_schedule() -> None:
    warmup = Warmup(steps=3, dense_steps=1)
    compression = DistQ(ratio=0.01, warmup=warmup, error_feedback=False, closed_loop=False)
    gradient = torch.randn(20_000)
    assert torch.equal(round_trip(compression, gradient), gradient)  # the dense step sends every entry
    for ratio in [*warmup.ratios(0.01)[1:], 0.01, 0.01]:
        assert torch.equal(round_trip(compression, gradient), selected_dense(gradient, ratio)), ratio


def test_the_closed_loop_learns_during_the_warmup() -> None:
    # A normal fit on Student-t(3) tails keeps about 10x too many entries at 0.001 single shot (see
    # test_distq.py). The loop corrects the warm-up's ratios as it would the target, so it never
    # lets that happen, and is on target within a few steps after the warm-up.
    warmup = Warmup(steps=8, start_ratio=0.05)
    compression = DistQ(ratio=0.001, error_feedback=False, warmup=warmup)
    torch.manual_seed(0)
    achieved = []
    for ratio in [*warmup.ratios(0.001), *[0.001] * 6]:
        round_trip(compression, torch.distributions.StudentT(3.0).sample((1_000_000,)))
        achieved.append(compression.stats["w"].achieved_ratio / ratio)
    assert max(achieved) < 2.5 and all(abs(a - 1) < 0.25 for a in achieved[-3:]), achieved


def test_a_resumed_warmup_goes_on_with_its_schedule() -> None:
    torch.manual_seed(1)
    gradients = torch.randn(6, 20_000)
    _, state = resumed_exactly({"ratio": 0.01, "warmup": 4}, gradients, stop=2)
    assert state["warmup"] == {"steps": {"w": 2}}
    # Without its step counts the schedule starts again: a larger ratio than the uninterrupted run's.
    restarted = DistQ(ratio=0.01, warmup=4)
    restarted.load_state_dict({key: value for key, value in state.items() if key != "warmup"})
    resumed = DistQ(ratio=0.01, warmup=4)
    resumed.load_state_dict(state)
    assert (round_trip(restarted, gradients[2]) != 0).sum() > (round_trip(resumed, gradients[2]) != 0).sum()


def test_bad_warmup_states_change_nothing() -> None:
    compression = DistQ(ratio=0.01, warmup=4)
    round_trip(compression, torch.randn(5000))
    state = compression.state_dict()
    for bad in ({"steps": {"w": -1}}, {"steps": {"w": 1.5}}, {"steps": [1]}, "x"):
        with pytest.raises(ValueError, match="warm-up"):
            compression.load_state_dict({**state, "warmup": bad})
    assert compression.state_dict()["warmup"] == {"steps": {"w": 1}}
