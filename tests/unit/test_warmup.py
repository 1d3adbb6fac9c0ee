"""The sparsity warm-up: its schedule (neutral), and DistQ following it under torch in one process
(Horovod size 1); the TensorFlow frontend's twin tests are in test_tensorflow.py."""

from __future__ import annotations

import horovod.torch as hvd
import numpy as np
import pytest
import torch

from horovod_distq import Warmup
from horovod_distq.torch import DistQ
from horovod_distq.warmup import warmup_from
from tests.unit.test_distq import round_trip, selected_dense


@pytest.fixture(scope="module", autouse=True)
def horovod() -> None:
    hvd.init()


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
    assert warmup_from(50) == Warmup(steps=50)
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
    uninterrupted = DistQ(ratio=0.01, warmup=4)
    expected = [round_trip(uninterrupted, g) for g in gradients]
    before = DistQ(ratio=0.01, warmup=4)
    for gradient in gradients[:2]:
        round_trip(before, gradient)
    state = before.state_dict()
    assert state["warmup"] == {"steps": {"w": 2}}
    resumed = DistQ(ratio=0.01, warmup=4)
    resumed.load_state_dict(state)
    for gradient, sent in zip(gradients[2:], expected[2:]):
        assert torch.equal(round_trip(resumed, gradient), sent)
    # Without its step counts the schedule starts again: a larger ratio than the uninterrupted run's.
    restarted = DistQ(ratio=0.01, warmup=4)
    restarted.load_state_dict({key: value for key, value in state.items() if key != "warmup"})
    assert (round_trip(restarted, gradients[2]) != 0).sum() > (expected[2] != 0).sum()


def test_bad_warmup_states_change_nothing() -> None:
    compression = DistQ(ratio=0.01, warmup=4)
    round_trip(compression, torch.randn(5000))
    state = compression.state_dict()
    for bad in ({"steps": {"w": -1}}, {"steps": {"w": 1.5}}, {"steps": [1]}, "x"):
        with pytest.raises(ValueError, match="warm-up"):
            compression.load_state_dict({**state, "warmup": bad})
    assert compression.state_dict()["warmup"] == {"steps": {"w": 1}}
