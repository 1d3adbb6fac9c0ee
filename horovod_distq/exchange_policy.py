"""``exchange="auto"``: which exchange a step's compressed gradients take, chosen from measured step times.

The byte model (:mod:`horovod_distq.exchange_cost`) counts what crosses the link but not what a
compressed step costs besides: the fit and the selection, the extra collective's latency, a
second phase. On a fast link those decide, and a sparse step can be slower than the dense
allreduce it replaces. So the policy measures instead of predicting: once the warm-up is over
(and at least :data:`SETTLE_STEPS` steps in, past the first steps' one-time costs) it runs each
candidate exchange for ``probe_steps`` steps and takes each one's median step time on every rank,
leaving out the first step after a switch (it pays for the switch: Horovod renegotiates the
tensors whose shapes changed). The ranks agree on those times through one allgather (every rank
gets the same numbers, so every rank chooses alike), and the cheapest runs until the next probe,
``reprobe_every`` steps later. Dense wins ties
within ``margin``, so a compressed step is chosen only where it is measurably faster.

A step's time is the time from its first gradient's ``compress()`` to the next step's: the whole
training step, forward and backward included, which are the same whatever the exchange; so the
difference between two candidates' times is the difference between their exchanges. Steps are
told apart by gradient names: a name handed over a second time starts the next step.

The times depend on the machine, so a run under ``exchange="auto"`` may take different exchanges
from one run to the next; pin ``exchange`` for a bit-reproducible run.
"""

from __future__ import annotations

import statistics
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# How a step's compressed gradients travel: the allgather with the per-tensor byte rule (what
# ``exchange="auto"`` does before its first measurement), the two-phase exchange, or dense.
ALLGATHER, TWO_PHASE, DENSE = "allgather", "two_phase", "dense"

# The first steps pay one-time costs (allocations, the first collective's set-up): never measured.
SETTLE_STEPS = 20


@dataclass(frozen=True)
class Decision:
    """One probe's outcome, the same on every rank.

    Attributes:
        step: the step it was made at (counted from the start, or the last reset).
        costs: per candidate exchange, the mean over ranks of each rank's median step time (seconds).
        chosen: the exchange the steps until the next probe take.
    """

    step: int
    costs: dict[str, float]
    chosen: str


class ExchangePolicy:
    """Chooses the exchange of each step from the step times it measured (module docstring).

    Args:
        candidates: the exchanges to choose from, in the order they are probed; must include "dense".
        first_probe: the step the first probe starts at (the warm-up's end, at least :data:`SETTLE_STEPS`).
        agree: every rank's bytes concatenated in rank order, for the bytes given (one allgather);
            called at the same step on every rank.
        probe_steps: steps each candidate runs in a probe, at least 2 (the first is not measured).
        reprobe_every: steps from one probe's start to the next's.
        margin: a compressed exchange is chosen only if its time is below dense's by this fraction.
        clock: seconds, monotonic.

    Example:
        >>> policy = ExchangePolicy(("allgather", "dense"), 50, compression.exchange.gather_bytes)
        >>> mode = policy.mode_for("fc.weight", hvd.size())   # in compress(): this step's exchange
    """

    default_probe_steps = 6

    __slots__ = ("_agree", "_clock", "_measured", "_mode", "_ranks", "_seen", "_started", "_times", "candidates",
                 "first_probe", "last_decision", "margin", "probe_steps", "reprobe_every", "step")

    def __init__(
        self,
        candidates: Sequence[str],
        first_probe: int,
        agree: Callable[[bytes], bytes],
        *,
        probe_steps: int = default_probe_steps,
        reprobe_every: int = 1000,
        margin: float = 0.03,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if DENSE not in candidates or len(set(candidates)) != len(candidates):
            raise ValueError(f"candidates must name each exchange once, dense among them, got {candidates!r}")
        if probe_steps < 2 or reprobe_every < len(candidates) * probe_steps + 1:
            raise ValueError("a probe needs at least two steps per candidate and must end before the next starts")
        self.candidates = tuple(candidates)
        self.first_probe = max(first_probe, SETTLE_STEPS)
        self.probe_steps = probe_steps
        self.reprobe_every = reprobe_every
        self.margin = margin
        self._agree = agree
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Starts afresh at step 0 with nothing measured: after an interrupted step or an elastic
        reset, on every rank alike (a worker that joins starts there too)."""
        self.step = -1  # no step started yet
        self._ranks = 0
        self.last_decision: Decision | None = None
        self._seen: set[str] = set()
        self._started: float | None = None
        self._times: dict[str, list[float]] = {}
        self._measured = False  # whether the step in progress counts towards its exchange's time
        self._mode = ALLGATHER

    @property
    def mode(self) -> str:
        """The exchange of the step in progress."""
        return self._mode

    def mode_for(self, name: str, ranks: int) -> str:
        """The exchange of the step that hands over gradient ``name``; counts a new step when
        ``name`` was already handed over in the current one.

        Args:
            name: the gradient's name.
            ranks: the process set's size; when it changed, what was measured no longer holds and
                the policy starts afresh (every rank sees the change at the same step).

        Returns:
            "allgather", "two_phase" or "dense".
        """
        if ranks != self._ranks:
            self.reset()
            self._ranks = ranks
        if name in self._seen or self.step < 0:
            self._start_step()
        self._seen.add(name)
        return self._mode

    def _start_step(self) -> None:
        now = self._clock()
        if self._measured:
            self._times.setdefault(self._mode, []).append(now - self._started)
        self._started = now
        self._seen.clear()
        self.step += 1
        since = self.step - self.first_probe
        in_cycle = since % self.reprobe_every
        probe_length = len(self.candidates) * self.probe_steps
        self._measured = since >= 0 and in_cycle < probe_length and in_cycle % self.probe_steps > 0
        if since < 0:
            self._mode = ALLGATHER
        elif in_cycle < probe_length:
            if in_cycle == 0:
                self._times.clear()
            self._mode = self.candidates[in_cycle // self.probe_steps]
        elif in_cycle == probe_length:
            self.last_decision = self._decide()
            self._mode = self.last_decision.chosen

    def _decide(self) -> Decision:
        """Every rank's median step time of each candidate, agreed; the cheapest, dense on a near tie.

        Raises:
            ValueError: on every rank, when the ranks probed different candidates (their settings differ).
        """
        medians = [statistics.median(self._times[mode]) for mode in self.candidates]
        row = struct.Struct(f"<q{len(medians)}d")
        gathered = self._agree(row.pack(_candidates_key(self.candidates), *medians))
        whole = len(gathered) % row.size == 0
        rows = [row.unpack_from(gathered, offset) for offset in range(0, len(gathered), row.size)] if whole else []
        if not whole or any(r[0] != _candidates_key(self.candidates) for r in rows):
            raise ValueError(f"DistQ exchange='auto': the ranks chose between different exchanges (this rank: "
                             f"{', '.join(self.candidates)}); give every rank the same DistQ settings")
        costs = {mode: statistics.fmean(r[1 + i] for r in rows) for i, mode in enumerate(self.candidates)}
        fastest = min(self.candidates, key=lambda mode: (costs[mode], mode != DENSE))
        chosen = fastest if costs[fastest] < costs[DENSE] * (1 - self.margin) else DENSE
        return Decision(self.step, costs, chosen)


def _candidates_key(candidates: Sequence[str]) -> int:
    return zlib.crc32(",".join(candidates).encode())
