"""Closed-loop correction of the ratio fed to the fit, per tensor, from what the fit achieved.

A fitted family rarely matches real gradients exactly, so a threshold fitted at the target ratio
keeps too many or too few entries, and consistently so from one step to the next. The controller
keeps, per tensor, the ratio to ask the fit for and moves it after each step by a secant step in
log space: log(achieved) is close to linear in log(fit ratio) with a slope near 1 for a good family
and further from 1 for a poor one; the slope is re-estimated from the last two steps. It costs no
pass over the tensor: it reads the number of selected entries, which the exchange needs anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

_MIN_SLOPE, _MAX_SLOPE = 0.1, 5.0
_SLOPE_MOVE = math.log(1.5)
_MAX_STEP = math.log(1e4)  # at most a factor of 10^4 per step
# Within +-25% of the target the error is mostly the gradient's step-to-step change, which the next
# step will not repeat: half a step there feeds back half that noise.
_NOISE_BAND = math.log(1.25)
_NOISE_GAIN = 0.5
# A badly mis-specified family (a normal fit to Student-t(3) tails) needs fit ratios far below the target.
_LOWEST_FIT_RATIO = 1e-30


@dataclass
class _TensorLoop:
    log_fit: float
    last_log_fit: float | None = None
    last_log_achieved: float | None = None
    slope: float = 1.0


class RatioController:
    """Per tensor name, the ratio to fit at so that the achieved ratio meets ``target``.

    Args:
        target: the ratio of entries to select, in (0, 1].

    Example:
        >>> loop = RatioController(0.001)
        >>> ratio = loop.fit_ratio("fc.weight")          # 0.001 on the first step
        >>> loop.update("fc.weight", selected=3000, numel=1_000_000)
        >>> loop.fit_ratio("fc.weight") < 0.001          # it kept 3x too many: ask for fewer
        True
    """

    __slots__ = ("_loops", "target")

    def __init__(self, target: float) -> None:
        self.target = target
        self._loops: dict[str, _TensorLoop] = {}

    def fit_ratio(self, name: str) -> float:
        """The ratio to pass to the fit for ``name`` this step."""
        loop = self._loops.get(name)
        return self.target if loop is None else math.exp(loop.log_fit)

    def update(self, name: str, selected: int, numel: int) -> None:
        """Records what the fit at :meth:`fit_ratio` selected and moves the fit ratio."""
        if numel <= 0:
            return
        loop = self._loops.setdefault(name, _TensorLoop(math.log(self.target)))
        # Half an entry when none was kept keeps the logarithm finite and the step bounded.
        log_achieved = math.log(max(selected, 0.5) / numel)
        # The slope is learnt only from large moves: over a small one, the step-to-step change of
        # the gradient itself dominates the difference and the secant would be noise.
        if loop.last_log_fit is not None and abs(loop.log_fit - loop.last_log_fit) > _SLOPE_MOVE:
            secant = (log_achieved - loop.last_log_achieved) / (loop.log_fit - loop.last_log_fit)
            if secant > 0:
                loop.slope = min(max(secant, _MIN_SLOPE), _MAX_SLOPE)
        error = math.log(self.target) - log_achieved
        step = error / loop.slope * (_NOISE_GAIN if abs(error) < _NOISE_BAND else 1.0)
        step = min(max(step, -_MAX_STEP), _MAX_STEP)
        loop.last_log_fit, loop.last_log_achieved = loop.log_fit, log_achieved
        loop.log_fit = min(max(loop.log_fit + step, math.log(_LOWEST_FIT_RATIO)), 0.0)

    def state_dict(self) -> dict[str, Any]:
        """Per-tensor loop state, for a checkpoint."""
        return {"target": self.target, "loops": {name: vars(loop).copy() for name, loop in self._loops.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`; a checkpoint saved for another target starts afresh."""
        self._loops = {}
        if state.get("target") == self.target:
            self._loops = {name: _TensorLoop(**loop) for name, loop in state["loops"].items()}
