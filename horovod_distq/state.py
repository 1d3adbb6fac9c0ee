"""DistQ's checkpoint format, for both frontends: one rank's state, or every rank's in one dict.

A rank's state is ``{"error_feedback": {"residuals": {name: array}, "velocities": {name: array},
"adam": {"first_moments": {name: array}, "second_moments": {name: array}, "steps": {name: int}}},
"closed_loop": {"target": ratio, "loops": {name: array of 4}}, "warmup": {"steps": {name: int}},
"rank": the rank that saved it, or None}``, the arrays being the frontend's (torch tensors, NumPy arrays);
velocities are momentum correction's, "adam" local Adam's moments and steps, warm-up steps each
gradient's steps so far. Error feedback is
per rank: each rank's residual is what *its* gradients did not send, and loading another rank's
state with ``load_state_dict`` warns (a ``"rank"`` of None loads anywhere without a warning).
So a checkpoint written by rank 0 alone resumes exactly only if it holds every rank's state:
``{"all_ranks": [state of rank 0, state of rank 1, ...]}``, gathered by one collective, from which
each rank loads its own part.
"""

from __future__ import annotations

import numbers
import pickle
import struct
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

ALL_RANKS = "all_ranks"
_LENGTH = struct.Struct("<q")


def serialize(state: dict[str, Any]) -> bytes:
    """One rank's state as bytes, length-prefixed, for :func:`deserialize_gathered`."""
    payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


def deserialize_gathered(gathered: bytes, size: int) -> list[dict[str, Any]]:
    """Every rank's state from the concatenation of their :func:`serialize` outputs (an allgather).

    Raises:
        ValueError: the bytes are not ``size`` length-prefixed states, exactly.
    """
    states, offset = [], 0
    for rank in range(size):
        if offset + _LENGTH.size > len(gathered):
            raise ValueError(f"DistQ state gather: rank {rank}'s state is missing ({len(gathered)} bytes in all)")
        (length,) = _LENGTH.unpack_from(gathered, offset)
        offset += _LENGTH.size
        if length < 0 or offset + length > len(gathered):
            raise ValueError(f"DistQ state gather: rank {rank}'s state claims {length} bytes, beyond what arrived")
        states.append(pickle.loads(gathered[offset : offset + length]))
        offset += length
    if offset != len(gathered):
        raise ValueError(f"DistQ state gather: {len(gathered) - offset} bytes left over after {size} ranks' states")
    return states


def rank_part(state: Any, process_set: Any) -> dict[str, Any]:
    """The state this rank loads: its own part of an all-ranks state, or ``state`` itself.

    Args:
        state: what ``state_dict()`` or ``state_dict(all_ranks=True)`` returned.
        process_set: the Horovod process set the compressor reduces over (its rank and size
            are read only for an all-ranks state).

    Raises:
        ValueError: not a DistQ state, or an all-ranks state saved by another number of ranks.
    """
    if isinstance(state, dict) and ALL_RANKS in state:
        parts = state[ALL_RANKS]
        if not isinstance(parts, list):
            raise ValueError(f"DistQ state: {ALL_RANKS!r} must be a list of every rank's state")
        size = process_set.size()
        if len(parts) != size:
            raise ValueError(
                f"DistQ state: saved by {len(parts)} ranks, loaded by {size}. Each rank's residuals belong to "
                f"that rank's data; load {{**state[{ALL_RANKS!r}][i], 'rank': None}} for the ranks you map them to, "
                "or skip load_state_dict to start DistQ afresh (its residuals then start at zero)"
            )
        return _checked_rank_state(parts[process_set.rank()])
    state = _checked_rank_state(state)
    saved_on, loading_on = state.get("rank"), readable_rank(process_set)
    if saved_on is not None and loading_on is not None and saved_on != loading_on:
        warnings.warn(
            f"DistQ: rank {loading_on} loads the state rank {saved_on} saved. A rank's residuals hold what "
            "its own gradients did not send, so this rank resumes with another rank's and drifts from the "
            "uninterrupted run. Save with state_dict(all_ranks=True) on every rank (rank 0 writes the file; each "
            "rank loads its own part), or save and load one file per rank; to load it here on purpose, set its "
            "'rank' to None.",
            stacklevel=3,
        )
    return state


def readable_rank(process_set: Any) -> int | None:
    """This process's rank in ``process_set``, or None where none can be read: before ``hvd.init()``
    (or without a torch process group), or outside the process set. A state saved then records no
    rank, and one loaded then is not checked against its saver's."""
    try:
        return process_set.rank()
    except ValueError:
        return None


def _checked_rank_state(state: Any) -> dict[str, Any]:
    if not isinstance(state, dict) or not {"error_feedback", "closed_loop"} <= set(state):
        raise ValueError(
            "DistQ state: expected a dict with 'error_feedback' and 'closed_loop' (or 'all_ranks'), "
            "as state_dict() returns"
        )
    return state


def checked_residuals(state: Any, is_floating: Callable[[Any], bool]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The residuals and the momentum-correction velocities of an error-feedback state, checked
    (velocities absent: none, every velocity starts at zero).

    Raises:
        ValueError: not ``{"residuals": {name: floating-point array}, "velocities": {...}}``.
    """
    if not isinstance(state, dict) or not isinstance(state.get("residuals"), dict):
        raise ValueError("DistQ error-feedback state: expected a dict with 'residuals', as state_dict() returns")
    velocities = state.get("velocities", {})
    if not isinstance(velocities, dict):
        raise ValueError("DistQ error-feedback state: 'velocities' must be a dict of arrays, as state_dict() returns")
    for kind, arrays in (("residual", state["residuals"]), ("velocity", velocities)):
        for name, array in arrays.items():
            if not isinstance(name, str) or not is_floating(array):
                raise ValueError(f"DistQ {kind} of {name!r}: expected a floating-point array, got {array!r}")
    return state["residuals"], velocities


class AdamMoments(NamedTuple):
    """Local Adam's state of error feedback: per gradient name, its moments and its step count."""

    first_moments: dict[str, Any]
    second_moments: dict[str, Any]
    steps: dict[str, int]


def checked_adam_moments(state: Any, is_floating: Callable[[Any], bool]) -> AdamMoments:
    """Local Adam's moments and steps of an error-feedback state, checked (absent: none, every
    gradient's moments start at zero).

    Raises:
        ValueError: not ``{"first_moments": {name: array}, "second_moments": {...}, "steps": {name: int}}``
            with the same names in all three.
    """
    adam = state.get("adam", {}) if isinstance(state, dict) else None
    parts = ("first_moments", "second_moments", "steps")
    if not isinstance(adam, dict) or (adam and not all(isinstance(adam.get(part), dict) for part in parts)):
        raise ValueError(f"DistQ error-feedback state: 'adam' must be a dict with {parts}, as state_dict() returns")
    if not adam:
        return AdamMoments({}, {}, {})
    first, second, steps = (adam[part] for part in parts)
    if not set(first) == set(second) == set(steps):
        raise ValueError("DistQ local Adam state: first_moments, second_moments and steps name different gradients")
    for kind, arrays in (("first moment", first), ("second moment", second)):
        for name, array in arrays.items():
            if not isinstance(name, str) or not is_floating(array):
                raise ValueError(f"DistQ local Adam {kind} of {name!r}: expected a floating-point array, got {array!r}")
    for name, step in steps.items():
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 1:
            raise ValueError(f"DistQ local Adam steps of {name!r}: expected a positive integer, got {step!r}")
    return AdamMoments(first, second, {name: int(step) for name, step in steps.items()})


def checked_loops(state: Any, target: float, is_floating: Callable[[Any], bool]) -> dict[str, Any]:
    """The closed-loop states of ``state``, checked; empty when it was saved for another target
    ratio (the loops then start afresh, as the ratio they learnt to fit at no longer applies).

    Raises:
        ValueError: not ``{"target": ratio, "loops": {name: 4 floating-point values}}``.
    """
    if not isinstance(state, dict) or not {"target", "loops"} <= set(state) or not isinstance(state["loops"], dict):
        raise ValueError("DistQ closed-loop state: expected a dict with 'target' and 'loops', as state_dict() returns")
    for name, loop in state["loops"].items():
        if not isinstance(name, str) or not is_floating(loop) or tuple(loop.shape) != (4,):
            raise ValueError(f"DistQ closed-loop state of {name!r}: expected 4 floating-point values, got {loop!r}")
    return state["loops"] if state["target"] == target else {}


def checked_warmup_steps(state: Any) -> dict[str, int]:
    """The per-gradient step counts of a warm-up state, checked (absent: none, every schedule starts afresh).

    Raises:
        ValueError: not ``{"steps": {name: non-negative int}}``.
    """
    if state is None:
        return {}
    if not isinstance(state, dict) or not isinstance(state.get("steps"), dict):
        raise ValueError("DistQ warm-up state: expected a dict with 'steps', as state_dict() returns")
    for name, steps in state["steps"].items():
        if not isinstance(name, str) or isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
            raise ValueError(f"DistQ warm-up steps of {name!r}: expected a non-negative integer, got {steps!r}")
    return {name: int(steps) for name, steps in state["steps"].items()}
