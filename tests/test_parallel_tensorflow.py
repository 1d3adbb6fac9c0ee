"""DistQ in Horovod's TensorFlow tape under real Horovod, 2 workers, Gloo and MPI (see tests/parallel/)."""

from __future__ import annotations

import pytest

from tests.launch import ROOT, horovodrun

pytestmark = pytest.mark.parametrize("controller", ["gloo", "mpi"])


def test_tape_matches_dense_reference(controller: str) -> None:
    output = horovodrun(ROOT / "tests/parallel/tensorflow_tape_check.py", controller, timeout=600)
    assert output.count("all DistQ tape checks passed") == 2


def test_ranks_disagreeing_on_the_sparse_path_fail_cleanly(controller: str) -> None:
    output = horovodrun(ROOT / "tests/parallel/tensorflow_disagreement_check.py", controller, timeout=120)
    assert output.count("disagreement reported") == 6 and output.count("different ratios: fine") == 2
