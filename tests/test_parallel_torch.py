"""DistQ under real Horovod, 2 workers, Gloo and MPI (see tests/parallel/)."""

from __future__ import annotations

import pytest

from tests.launch import ROOT, horovodrun

pytestmark = pytest.mark.parametrize("controller", ["gloo", "mpi"])


def test_optimizer_matches_dense_reference(controller: str) -> None:
    output = horovodrun(ROOT / "tests/parallel/torch_optimizer_check.py", controller)
    assert output.count("all DistQ optimizer checks passed") == 2


def test_ranks_disagreeing_on_the_sparse_path_fail_cleanly(controller: str) -> None:
    output = horovodrun(ROOT / "tests/parallel/torch_disagreement_check.py", controller, timeout=120)
    assert output.count("disagreement reported") == 6 and output.count("different ratios: fine") == 2
