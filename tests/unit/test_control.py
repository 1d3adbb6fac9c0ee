"""The closed-loop ratio controller on its own (counts in, fit ratio out)."""

from __future__ import annotations

import math

import pytest

from horovod_distq.torch import RatioController


def run(controller: RatioController, achieved_of_fit, steps: int) -> list[float]:
    """Feeds the controller a model of the fit (achieved ratio as a function of the fit ratio)."""
    achieved = []
    for _ in range(steps):
        ratio = achieved_of_fit(controller.fit_ratio("t"))
        achieved.append(ratio)
        controller.update("t", selected=round(ratio * 1_000_000), numel=1_000_000)
    return achieved


@pytest.mark.parametrize(("scale", "power"), [(10.0, 1.0), (0.1, 1.0), (3.0, 0.6), (0.3, 1.5), (20.0, 0.8)])
def test_converges_for_power_law_fits(scale: float, power: float) -> None:
    target = 0.001
    achieved = run(RatioController(target), lambda r: min(1.0, scale * target * (r / target) ** power), 6)
    assert abs(achieved[-1] / target - 1) < 0.03, [a / target for a in achieved]


def test_nothing_selected_moves_the_fit_ratio_up_boundedly() -> None:
    controller = RatioController(0.01)
    controller.update("t", selected=0, numel=1000)
    assert 0.01 < controller.fit_ratio("t") <= 1.0


def test_fit_ratio_stays_in_range() -> None:
    controller = RatioController(0.5)
    for _ in range(10):
        controller.update("t", selected=0, numel=1000)
    assert controller.fit_ratio("t") <= 1.0


def test_state_dict_round_trip_and_target_change() -> None:
    controller = RatioController(0.01)
    controller.update("t", selected=300, numel=10_000)
    restored = RatioController(0.01)
    restored.load_state_dict(controller.state_dict())
    assert restored.fit_ratio("t") == controller.fit_ratio("t")
    other = RatioController(0.001)
    other.load_state_dict(controller.state_dict())
    assert other.fit_ratio("t") == 0.001
    assert math.isclose(RatioController(0.02).fit_ratio("new"), 0.02)
