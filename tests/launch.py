"""Runs a script under ``horovodrun -np 2`` on this machine, with Gloo or MPI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOROVODRUN = Path(sys.executable).with_name("horovodrun")
CONTROLLERS = {
    "gloo": ["--gloo"],
    # Open MPI refuses root without the flag; CI runs as root on 2 cores.
    "mpi": ["--mpi", "--mpi-args=--allow-run-as-root --oversubscribe"],
}


def horovodrun(script: str | Path, controller: str, *args: str, timeout: float = 300) -> str:
    """Runs ``script`` on 2 local workers; returns the combined output, fails the test on a non-zero exit."""
    command = [str(HOROVODRUN), "-np", "2", "-H", "localhost:2", *CONTROLLERS[controller],
               sys.executable, str(script), *args]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{output[-6000:]}"
    return output
