"""The exchange's cost model and ``exchange=`` of both DistQs: where sparse stops paying, and that
a tensor sent dense carries its residual (error feedback stays exact)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import horovod.tensorflow as hvd_tf
import horovod.torch as hvd_torch
import numpy as np
import pytest
import tensorflow as tf
import torch

import horovod_distq.tensorflow as distq_tf
import horovod_distq.torch as distq_torch
from horovod_distq.config import DistQConfig
from horovod_distq.exchange_cost import (
    crossover_ranks,
    dense_link_bytes,
    sparse_is_cheaper,
    sparse_link_bytes,
    two_phase_link_bytes,
)

# Bytes a pair takes on the wire, stated here apart from the package: (index, value) per encoding.
PAIR_BYTES = {("auto", "float32"): 8, ("auto", "float64"): 12, ("float16", "float32"): 6, ("sign", "float32"): 4}


@pytest.fixture(scope="module", autouse=True)
def horovod() -> None:
    hvd_torch.init()
    hvd_tf.init()


@pytest.mark.parametrize(("encoding", "dtype"), list(PAIR_BYTES))
@pytest.mark.parametrize("ratio", [0.1, 0.01, 0.001])
def test_sparse_pays_up_to_the_crossover(encoding: str, dtype: str, ratio: float) -> None:
    numel, element = 2**20, np.dtype(dtype).itemsize
    scales = 8 if encoding == "sign" else 0
    for ranks in (1, 2, 3, 8, 64, 100, 101, 200, 201, 1024, 2000, 20000):
        sparse = (ranks - 1) * (ratio * numel * PAIR_BYTES[encoding, dtype] + scales)
        dense = 2 * (ranks - 1) / ranks * numel * element
        assert sparse_link_bytes(numel, ratio, ranks, encoding, dtype) == pytest.approx(sparse)
        assert dense_link_bytes(numel, ranks, dtype) == pytest.approx(dense)
        assert sparse_is_cheaper(numel, ratio, ranks, encoding, dtype) == (sparse <= dense * (1 + 1e-12)), ranks
    assert crossover_ranks(ratio, encoding, dtype) == pytest.approx(2 * element / (ratio * PAIR_BYTES[encoding, dtype]))


def test_exchange_is_validated_and_part_of_the_agreement() -> None:
    with pytest.raises(ValueError, match="exchange must be one of"):
        DistQConfig(ratio=0.01, exchange="ring")
    keys = {DistQConfig(ratio=0.01, exchange=mode).agreement_key() for mode in ("auto", "sparse", "dense", "two_phase")}
    assert len(keys) == 4
    assert DistQConfig(ratio=0.01).agreement_key() == DistQConfig(ratio=0.2).agreement_key()  # ratios may differ


class Ranks:
    """A process set of ``count`` ranks, as far as the cost model asks (this rank is rank 0)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def size(self) -> int:
        return self.count

    def rank(self) -> int:
        return 0

    def included(self) -> bool:
        return True


FRONTENDS = {
    "torch": (distq_torch.DistQ, lambda a: torch.from_numpy(a), lambda t: t.numpy()),
    "tensorflow": (distq_tf.DistQ, lambda a: tf.constant(a), lambda t: np.asarray(t)),
}


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_auto_goes_dense_past_the_crossover(frontend: str) -> None:
    make, to_tensor, _ = FRONTENDS[frontend]
    gradient = to_tensor(np.random.default_rng(0).standard_normal(5000).astype(np.float32))
    compression = make(ratio=0.01)
    for ranks, sparse in ((2, True), (100, True), (101, False), (1024, False)):
        compression.exchange.process_set = Ranks(ranks)
        assert compression.compresses(gradient) == sparse, ranks
    assert make(ratio=0.01, exchange="sparse").compresses(gradient)  # whatever the size
    assert not make(ratio=0.01, exchange="dense").compresses(gradient)


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_a_dense_step_sends_the_residual_and_spends_it(frontend: str) -> None:
    make, to_tensor, to_numpy = FRONTENDS[frontend]
    rng = np.random.default_rng(1)
    sparse = make(ratio=0.01, exchange="sparse", warmup=None)
    for _ in range(3):
        sparse.compress(to_tensor(rng.standard_normal((50, 100)).astype(np.float32)), name="w")
        sparse.discard_step()  # only the residual matters here, not the exchange
    residual = to_numpy(sparse.memory.residual("w")).reshape(50, 100)
    assert np.count_nonzero(residual) > 4000
    dense = make(ratio=0.01, exchange="dense")
    dense.load_state_dict(sparse.state_dict())
    gradient = rng.standard_normal((50, 100)).astype(np.float32)
    sent, ctx = dense.compress(to_tensor(gradient), name="w")
    assert ctx is None and tuple(sent.shape) == (50, 100)
    np.testing.assert_allclose(to_numpy(sent), gradient + residual, rtol=1e-6)
    left = dense.memory.residual("w")
    assert left is None or not np.any(to_numpy(left)), "the residual was sent: it must not be sent again"
    again, _ = dense.compress(to_tensor(gradient), name="w")
    np.testing.assert_array_equal(to_numpy(again), gradient)


@pytest.mark.parametrize(("dtype", "pair"), [("float32", 8), ("float16", 6)])
def test_two_phase_bytes_do_not_grow_with_the_ranks(dtype: str, pair: int) -> None:
    numel, ratio = 2**20, 0.01
    sums_pair = 4 + 4  # int32 index, the sum in float32 (the accumulation dtype)
    for ranks in (2, 3, 8, 64, 1024):
        expected = (ranks - 1) / ranks * ratio * numel * (pair + sums_pair)
        assert two_phase_link_bytes(numel, ratio, ranks, "auto", dtype) == pytest.approx(expected)
    assert two_phase_link_bytes(numel, ratio, 2, "auto", "float32") == pytest.approx(
        sparse_link_bytes(numel, ratio, 2, "auto", "float32"))
