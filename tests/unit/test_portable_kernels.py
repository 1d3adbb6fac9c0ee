"""The portable build of the vectorised loops (the one CPUs without AVX2 run) against the reference.

The kernels pick their build once per process, so this runs the whole reference test file in a
child process with DISTQ_PORTABLE_KERNELS=1, and checks that every test it collects there passed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.launch import ROOT

TESTS = "tests/unit/test_sparsify.py"


def pytest_child(*args: str) -> str:
    env = dict(os.environ, DISTQ_PORTABLE_KERNELS="1")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, TESTS]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


def test_portable_kernels_match_reference() -> None:
    collected = int(re.search(r"(\d+) tests? collected", pytest_child("--collect-only")).group(1))
    summary = pytest_child().strip().splitlines()[-1]
    assert collected > 100 and summary.startswith(f"{collected} passed"), (collected, summary)
