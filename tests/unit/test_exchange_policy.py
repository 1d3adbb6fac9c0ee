"""``exchange="auto"``'s policy: its probe schedule, how it tells steps apart, how ranks agree on
the step times and which exchange it then chooses (a fake clock; every rank simulated in one process)."""

from __future__ import annotations

import struct
import zlib

import pytest

from horovod_distq.exchange_policy import ALLGATHER, DENSE, SETTLE_STEPS, TWO_PHASE, ExchangePolicy

CANDIDATES = (ALLGATHER, TWO_PHASE, DENSE)
NAMES = ("a.weight", "b.weight", "c.weight")


class StepClock:
    """A clock each step of which lasts ``costs[mode]`` seconds of the mode the policy ran it with."""

    def __init__(self, costs: dict[str, float]) -> None:
        self.costs = costs
        self.now = 0.0
        self.policy: ExchangePolicy | None = None

    def __call__(self) -> float:
        return self.now

    def advance(self) -> None:
        self.now += self.costs[self.policy.mode]


def run(policy: ExchangePolicy, clock: StepClock, steps: int, ranks: int = 2) -> list[str]:
    """The exchange of each of ``steps`` steps, each handing over NAMES in a changing order."""
    clock.policy = policy
    modes = []
    for step in range(steps):
        order = NAMES if step % 2 else tuple(reversed(NAMES))
        modes.append({policy.mode_for(name, ranks) for name in order})
        clock.advance()
    assert all(len(m) == 1 for m in modes), "one exchange per step"
    return [m.pop() for m in modes]


def alone(payload: bytes) -> bytes:
    return payload


@pytest.mark.parametrize(("costs", "chosen"), [
    ({ALLGATHER: 1.0, TWO_PHASE: 0.9, DENSE: 1.2}, TWO_PHASE),
    ({ALLGATHER: 0.5, TWO_PHASE: 0.9, DENSE: 1.2}, ALLGATHER),
    ({ALLGATHER: 1.0, TWO_PHASE: 1.1, DENSE: 0.7}, DENSE),
    ({ALLGATHER: 0.99, TWO_PHASE: 1.1, DENSE: 1.0}, DENSE),  # 1% faster: within the margin, dense
])
def test_probes_each_exchange_then_runs_the_fastest(costs: dict[str, float], chosen: str) -> None:
    clock = StepClock(costs)
    policy = ExchangePolicy(CANDIDATES, 30, alone, probe_steps=3, reprobe_every=100, clock=clock)
    modes = run(policy, clock, 150)
    assert modes[:30] == [ALLGATHER] * 30  # the warm-up's steps: the byte rule's allgather
    assert modes[30:39] == [ALLGATHER] * 3 + [TWO_PHASE] * 3 + [DENSE] * 3
    assert modes[39:130] == [chosen] * 91
    assert modes[130:139] == [ALLGATHER] * 3 + [TWO_PHASE] * 3 + [DENSE] * 3  # probed again
    assert policy.last_decision.step == 139 and policy.last_decision.chosen == chosen
    assert policy.last_decision.costs == pytest.approx(costs)


def test_never_probes_before_the_first_steps_settle() -> None:
    clock = StepClock({ALLGATHER: 1.0, TWO_PHASE: 1.0, DENSE: 0.1})
    policy = ExchangePolicy((ALLGATHER, DENSE), 0, alone, probe_steps=2, clock=clock)
    modes = run(policy, clock, SETTLE_STEPS + 5)
    assert modes[:SETTLE_STEPS] == [ALLGATHER] * SETTLE_STEPS
    assert modes[SETTLE_STEPS:] == [ALLGATHER, ALLGATHER, DENSE, DENSE, DENSE]


def test_a_median_is_not_moved_by_one_slow_step() -> None:
    clock = StepClock({ALLGATHER: 1.0, DENSE: 1.5})
    policy = ExchangePolicy((ALLGATHER, DENSE), 20, alone, probe_steps=4, clock=clock)
    clock.policy = policy
    for step in range(40):
        for name in NAMES:
            policy.mode_for(name, 2)
        clock.advance()
        if step == 21:
            clock.now += 100.0  # one measured allgather step stalled (a checkpoint, a slow batch)
    assert policy.last_decision.chosen == ALLGATHER


def gathered_from(other_ranks_medians: list[tuple[float, ...]], candidates: tuple[str, ...] = CANDIDATES):
    """An agreement whose other ranks probed ``candidates`` and measured ``other_ranks_medians``
    (this rank's row first): each row the candidates' key, then a median per candidate."""
    key = zlib.crc32(",".join(candidates).encode())

    def agree(payload: bytes) -> bytes:
        return payload + b"".join(struct.pack(f"<q{len(m)}d", key, *m) for m in other_ranks_medians)

    return agree


def run_to_decision(policy: ExchangePolicy) -> None:
    clock = policy._clock
    clock.policy = policy
    while policy.last_decision is None:
        for name in NAMES:
            policy.mode_for(name, 2)
        clock.advance()


def test_ranks_that_measured_differently_choose_alike() -> None:
    # This rank saw two-phase fastest; the other rank saw it slowest: the mean over ranks decides,
    # the same on both, so both run the same collectives.
    clock = StepClock({ALLGATHER: 1.0, TWO_PHASE: 0.8, DENSE: 1.2})
    policy = ExchangePolicy(CANDIDATES, 20, gathered_from([(1.0, 1.6, 1.2)]), probe_steps=2, clock=clock)
    run_to_decision(policy)
    assert policy.last_decision.costs == pytest.approx({ALLGATHER: 1.0, TWO_PHASE: 1.2, DENSE: 1.2})
    assert policy.last_decision.chosen == ALLGATHER


def test_ranks_with_other_candidates_fail_on_every_rank() -> None:
    clock = StepClock({ALLGATHER: 1.0, TWO_PHASE: 0.8, DENSE: 1.2})
    others = gathered_from([(1.0, 1.2)], candidates=(ALLGATHER, DENSE))
    policy = ExchangePolicy(CANDIDATES, 20, others, probe_steps=2, clock=clock)
    with pytest.raises(ValueError, match="different exchanges"):
        run_to_decision(policy)


def test_a_new_world_size_or_a_reset_starts_afresh() -> None:
    clock = StepClock({ALLGATHER: 0.5, DENSE: 1.0})
    policy = ExchangePolicy((ALLGATHER, DENSE), 20, alone, probe_steps=2, clock=clock)
    run(policy, clock, 30, ranks=2)
    assert policy.step == 29 and policy.last_decision is not None
    assert run(policy, clock, 3, ranks=3) == [ALLGATHER] * 3
    assert policy.step == 2 and policy.last_decision is None
    policy.reset()
    assert policy.step == -1 and policy.mode == ALLGATHER


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="dense among them"):
        ExchangePolicy((ALLGATHER, TWO_PHASE), 20, alone)
    with pytest.raises(ValueError, match="two steps per candidate"):
        ExchangePolicy(CANDIDATES, 20, alone, probe_steps=5, reprobe_every=10)
    with pytest.raises(ValueError, match="two steps per candidate"):
        ExchangePolicy(CANDIDATES, 20, alone, probe_steps=1)


def test_which_frontends_choose_by_step_time() -> None:
    import torch

    from horovod_distq.tensorflow import DistQ as TensorFlowDistQ
    from horovod_distq.torch import DistQ
    from horovod_distq.torch.ddp import DistQState

    assert DistQ(0.01).exchange_policy.candidates == CANDIDATES
    # Momentum correction and the sign encoding cannot take the two-phase exchange.
    assert DistQ(0.01, momentum=0.9).exchange_policy.candidates == (ALLGATHER, DENSE)
    assert DistQ(0.01, value_encoding="sign").exchange_policy.candidates == (ALLGATHER, DENSE)
    for exchange in ("sparse", "dense", "two_phase"):
        assert DistQ(0.01, exchange=exchange).exchange_policy is None
    # Traced steps and the DDP hook keep the byte rule.
    assert TensorFlowDistQ(0.01).exchange_policy is None
    assert DistQState(torch.nn.Linear(4, 4), 0.01).exchange_policy is None

    # Made before hvd.init(), as every DistQ may be; on one rank there is nothing to choose.
    import horovod.torch as hvd

    hvd.init()
    assert DistQ(0.01).step_exchange() == ALLGATHER


def test_the_first_step_after_a_switch_is_not_measured() -> None:
    # Each switch's first step is slow (Horovod renegotiates the tensors whose shapes changed).
    clock = StepClock({ALLGATHER: 1.0, DENSE: 2.0})
    policy = ExchangePolicy((ALLGATHER, DENSE), 20, alone, probe_steps=2, clock=clock)
    clock.policy = policy
    previous = None
    while policy.last_decision is None:
        for name in NAMES:
            policy.mode_for(name, 2)
        clock.advance()
        if policy.mode != previous:
            clock.now += 50.0
        previous = policy.mode
    assert policy.last_decision.costs == {ALLGATHER: 1.0, DENSE: 2.0}
