"""DistQ under real Horovod, 2 workers, Gloo and MPI: every rank runs a pytest file of tests/parallel/."""

from __future__ import annotations

import pytest

from tests.launch import pytest_on_every_rank

pytestmark = pytest.mark.parametrize("controller", ["gloo", "mpi"])


def test_optimizer_matches_dense_reference(controller: str) -> None:
    # 8 averages (sum, predivide, two passes, 4 encodings among them), 1 empty selection, 3 error feedback,
    # 1 momentum correction against DGC in NumPy, 2 local Adam (against NumPy, resumed exactly), 2 misuses
    # (one DistQ for two optimizers, sparse gradients sent as dense), 1 rank-0 checkpoint resumed exactly.
    pytest_on_every_rank("tests/parallel/torch_optimizer_check.py", controller, passed=24, timeout=300)


def test_ranks_disagreeing_on_the_sparse_path_fail_cleanly(controller: str) -> None:
    # 2 disagreeing settings, a rank without DistQ, 1 disagreeing gradient dtype, 1 agreeing run.
    pytest_on_every_rank("tests/parallel/torch_disagreement_check.py", controller, passed=6, timeout=120)
