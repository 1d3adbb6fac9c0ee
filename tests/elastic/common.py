"""What the elastic training scripts share: the grow-then-shrink schedule and the run's log.

A run starts on one worker (host ``localhost``), asks for a second (host ``127.0.0.1``, the same
machine under another name, as Horovod's own elastic tests do; or two hosts of
tests/cluster/hosts.py, named by ``--hosts``) by rewriting the file the discovery script prints,
trains on two, gives the second host up, and trains on one again.
Rank 0 rewrites the file; Horovod's driver sees the change within about a second and the
workers meet it at their next ``state.commit()``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

LOCAL_HOSTS = ("localhost", "127.0.0.1")
STEPS_PER_PHASE = 6
# Steps a run may take in all: a reset that never comes ends the run instead of hanging it.
MAX_STEPS = 400
# Seconds between steps while a reset is awaited, so the wait costs few steps.
WAIT_SECONDS = 0.1


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts-file", type=Path, required=True, help="the file the discovery script prints")
    parser.add_argument("--out", type=Path, required=True, help="where rank 0 writes the run's log (JSON)")
    parser.add_argument("--hosts", nargs=2, default=LOCAL_HOSTS, help="the first host and the one that joins")
    parser.add_argument("--exchange", default="auto", help="DistQ's exchange (torch: two_phase too)")
    return parser.parse_args()


def host_lines(hosts: tuple[str, ...]) -> str:
    """What the discovery script prints for ``hosts``: one slot each."""
    return "".join(f"{host}:1\n" for host in hosts)


def digest(arrays: list[Any]) -> str:
    """A fingerprint of a model's parameters (NumPy arrays), to compare across ranks."""
    return hashlib.sha256(b"".join(array.tobytes() for array in arrays)).hexdigest()


class Schedule:
    """Where the run is: phase 0 on one worker, then 1 on two, then 2 on one again, then done.

    Its fields live in the elastic state (``state.phase``, ``state.in_phase``), which rank 0
    broadcasts to a joining worker, so every rank takes the same decisions.
    """

    sizes = (1, 2, 1)

    def __init__(self, hosts_file: Path, hosts: tuple[str, str] = LOCAL_HOSTS) -> None:
        self.hosts_file = hosts_file
        self.hosts = tuple(hosts)

    def finished(self, state: Any) -> bool:
        return state.phase >= len(self.sizes) or state.step >= MAX_STEPS

    def after_step(self, state: Any, size: int, rank: int) -> None:
        """Counts the step in its phase; once the phase has its steps, asks for the next world size
        and moves on when that size has come."""
        phase = state.phase
        if size == self.sizes[phase]:
            state.in_phase += 1
        if state.in_phase < STEPS_PER_PHASE:
            return
        if phase + 1 == len(self.sizes):
            state.phase += 1
            return
        wanted = self.sizes[phase + 1]
        if size == wanted:
            state.phase, state.in_phase = phase + 1, 1
            return
        if rank == 0 and not state.asked[phase]:
            self.hosts_file.write_text(host_lines(self.hosts[:wanted]))
            state.asked[phase] = time.time()
        time.sleep(WAIT_SECONDS)


def end_step(state: Any, schedule: Schedule, size: int, rank: int, loss: float, fingerprints: list[str]) -> None:
    """Logs the step (every rank's mean loss, whether every rank holds the same parameters), counts
    it, moves the schedule on and commits the elastic state."""
    identical = len(set(fingerprints)) == 1
    state.log.append({"step": state.step, "size": size, "loss": loss, "identical": identical, "time": time.time()})
    state.step += 1
    schedule.after_step(state, size, rank)
    state.commit()


def write_log(state: Any, out: Path) -> None:
    out.write_text(json.dumps({"log": state.log, "asked": state.asked, "steps": state.step}))
