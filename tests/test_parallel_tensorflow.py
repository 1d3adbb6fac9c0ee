"""DistQ in Horovod's TensorFlow tape under real Horovod, 2 workers, Gloo and MPI: every rank runs a
pytest file of tests/parallel/."""

from __future__ import annotations

import pytest

from tests.launch import pytest_on_every_rank

pytestmark = pytest.mark.parametrize("controller", ["gloo", "mpi"])


def test_tape_matches_dense_reference(controller: str) -> None:
    # Eagerly and in tf.function, each: 8 averages (sum, predivide, Horovod's own tape, 4 encodings
    # among them), 1 empty selection, 2 error feedback, 1 momentum correction against DGC in NumPy,
    # 1 local Adam against NumPy and resumed exactly, 1 embedding with a local source, 1 rank-0
    # checkpoint resumed exactly, 1 misuse (one DistQ for two models).
    pytest_on_every_rank("tests/parallel/tensorflow_tape_check.py", controller, passed=32, timeout=600)


def test_ranks_disagreeing_on_the_sparse_path_fail_cleanly(controller: str) -> None:
    # 2 disagreeing settings, a rank without DistQ, 1 disagreeing gradient dtype, 1 agreeing run.
    pytest_on_every_rank("tests/parallel/tensorflow_disagreement_check.py", controller, passed=5, timeout=120)


def test_keras_fit_reduces_through_the_distributed_optimizer(controller: str) -> None:
    # One step of fit against the dense reference (dense, DistQ), 3 steps of fit with local Adam
    # against NumPy (moved by move_adam, and by the optimizer given an Adam), 2 epochs with
    # broadcast and averaged metrics (dense, fp16, DistQ), an exact
    # resume from the DistQ checkpoint, a custom loop, ranks with different models refused.
    pytest_on_every_rank("tests/parallel/keras_fit_check.py", controller, passed=10, timeout=600)
