"""The checkpoint format shared by both frontends (horovod_distq.state), without a framework."""

from __future__ import annotations

import numpy as np
import pytest

from horovod_distq import state


class ProcessSet:
    def __init__(self, rank: int, size: int) -> None:
        self._rank, self._size = rank, size

    def rank(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._size


def rank_state(rank: int) -> dict:
    return {"error_feedback": {"residuals": {"w": np.full(3, float(rank))}},
            "closed_loop": {"target": 0.01, "loops": {"w": np.zeros(4)}}}


def test_gathered_states_split_back_per_rank() -> None:
    gathered = b"".join(state.serialize(rank_state(rank)) for rank in range(3))
    states = state.deserialize_gathered(gathered, 3)
    assert [s["error_feedback"]["residuals"]["w"][0] for s in states] == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("cut", [1, 8, 20])
def test_truncated_or_padded_gathers_are_refused(cut: int) -> None:
    gathered = b"".join(state.serialize(rank_state(rank)) for rank in range(2))
    with pytest.raises(ValueError, match="DistQ state gather"):
        state.deserialize_gathered(gathered[:-cut], 2)
    with pytest.raises(ValueError, match="left over"):
        state.deserialize_gathered(gathered + b"\0" * cut, 2)


def test_each_rank_takes_its_own_part() -> None:
    saved = {state.ALL_RANKS: [rank_state(0), rank_state(1)]}
    assert state.rank_part(saved, ProcessSet(1, 2)) is saved[state.ALL_RANKS][1]
    own = rank_state(0)
    assert state.rank_part(own, ProcessSet(1, 4)) is own  # a per-rank state, whatever the world
    with pytest.raises(ValueError, match="saved by 2 ranks, loaded by 3"):
        state.rank_part(saved, ProcessSet(0, 3))
    for bad in ({}, {state.ALL_RANKS: "x"}, {"error_feedback": {}}, [rank_state(0)]):
        with pytest.raises(ValueError, match="DistQ state"):
            state.rank_part(bad, ProcessSet(0, 2))


def test_parts_are_checked() -> None:
    is_float = lambda a: isinstance(a, np.ndarray) and a.dtype.kind == "f"  # noqa: E731
    assert state.checked_loops(rank_state(0)["closed_loop"], 0.02, is_float) == {}
    for bad in ({"residuals": {"w": np.arange(3)}}, {"residuals": {1: np.ones(3)}}, {"residuals": []}):
        with pytest.raises(ValueError, match="DistQ"):
            state.checked_residuals(bad, is_float)
    with pytest.raises(ValueError, match="4 floating-point values"):
        state.checked_loops({"target": 0.01, "loops": {"w": np.zeros(3)}}, 0.01, is_float)


def test_loading_another_ranks_state_warns() -> None:
    """Error feedback is per rank: rank 1 resuming from rank 0's own state would train on rank 0's
    residuals, which is not the run that was interrupted, so it is told how to save instead."""
    saved_by_rank_0 = {**rank_state(0), "rank": 0}
    with pytest.warns(UserWarning, match=r"rank 1 loads the state rank 0 saved.*all_ranks=True"):
        assert state.rank_part(saved_by_rank_0, ProcessSet(1, 2)) is saved_by_rank_0


@pytest.mark.filterwarnings("error")
def test_own_state_and_all_ranks_parts_load_quietly() -> None:
    parts = [{**rank_state(rank), "rank": rank} for rank in range(2)]
    assert state.rank_part(parts[1], ProcessSet(1, 2)) is parts[1]
    assert state.rank_part({state.ALL_RANKS: parts}, ProcessSet(1, 2)) is parts[1]
    older = rank_state(0)  # saved before states recorded their rank
    assert state.rank_part(older, ProcessSet(1, 2)) is older


class Uninitialized:
    """A process set before ``hvd.init()`` (or without a torch process group): no rank to read."""

    def rank(self) -> int:
        raise ValueError("Horovod has not been initialized; use hvd.init().")


@pytest.mark.filterwarnings("error")
def test_no_rank_to_read_records_none_and_checks_nothing() -> None:
    """state_dict() and pickling work before Horovod starts: the state then names no rank."""
    assert state.readable_rank(Uninitialized()) is None
    saved_by_rank_0 = {**rank_state(0), "rank": 0}
    assert state.rank_part(saved_by_rank_0, Uninitialized()) is saved_by_rank_0
    on_purpose = {**saved_by_rank_0, "rank": None}  # what the size-mismatch message tells users to load
    assert state.rank_part(on_purpose, ProcessSet(1, 2)) is on_purpose
