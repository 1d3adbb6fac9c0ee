"""Closed-loop correction of the ratio fed to the fit, per tensor, from what the fit achieved.

A fitted family rarely matches real gradients exactly, so a threshold fitted at the target ratio
keeps too many or too few entries, and consistently so from one step to the next. The loop keeps,
per tensor, the ratio to ask the fit for and moves it after each step by a secant step in log
space: log(achieved) is close to linear in log(fit ratio), with a slope near 1 for a good family
and further from 1 for a poor one, re-learnt from large moves only; within +-25% of the target it
takes half a step, as the error there is mostly the gradient's step-to-step change. It costs no
pass over the tensor: it reads the number of selected entries, which the exchange needs anyway.
The rule itself is the compiled core's (``csrc/core/control.h``), which the TensorFlow frontend's
``RatioController`` runs inside its graph.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from horovod_distq.state import checked_loops
from horovod_distq.torch.encoding import is_floating_tensor
from horovod_distq.torch.ops import initial_loop_state, update_loop_state


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

    __slots__ = ("_states", "target")

    def __init__(self, target: float) -> None:
        self.target = target
        self._states: dict[str, torch.Tensor] = {}

    def fit_ratio(self, name: str) -> float:
        """The ratio to pass to the fit for ``name`` this step."""
        state = self._states.get(name)
        return self.target if state is None else math.exp(float(state[0]))

    def update(self, name: str, selected: int, numel: int, target: float | None = None) -> None:
        """Records what the fit at :meth:`fit_ratio` selected and moves the fit ratio towards
        ``target`` (by default the controller's own: a warm-up passes its ratio of the step)."""
        state = self._states.get(name)
        if state is None:
            state = initial_loop_state(self.target)
        self._states[name] = update_loop_state(state, selected, numel, self.target if target is None else target)

    def state_dict(self) -> dict[str, Any]:
        """Per-tensor loop state (4 float64 each), for a checkpoint."""
        return {"target": self.target, "loops": {name: state.clone() for name, state in self._states.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`, all or nothing; a state saved for another target starts afresh.

        Raises:
            ValueError: ``state`` is not what :meth:`state_dict` returns; nothing is changed.
        """
        self.restore(self.validated(state))

    def validated(self, state: Any) -> dict[str, torch.Tensor]:
        """The loop states :meth:`restore` would load from ``state`` (copies), or ValueError."""
        loops = checked_loops(state, self.target, is_floating_tensor)
        return {name: loop.detach().to("cpu", torch.float64, copy=True) for name, loop in loops.items()}

    def restore(self, loops: dict[str, torch.Tensor]) -> None:
        """Makes ``loops`` (from :meth:`validated`) the loop states; others start afresh."""
        self._states = dict(loops)
