"""The portable build of the vectorised loops (the one CPUs without AVX2 run) against the reference.

The kernels pick their build once per process, so this runs the reference tests in a child
process with DISTQ_PORTABLE_KERNELS=1.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.launch import ROOT


def test_portable_kernels_match_reference() -> None:
    env = dict(os.environ, DISTQ_PORTABLE_KERNELS="1")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "tests/unit/test_sparsify.py", "-k", "matches_reference or bad or small"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
