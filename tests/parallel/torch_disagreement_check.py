"""Ranks that disagree on which tensors are sparse, or how, must fail with an error, not hang.

Every rank runs this file with pytest under ``horovodrun -np 2`` (tests/test_parallel_torch.py).
"""

from __future__ import annotations

import horovod.torch as hvd
import pytest
import torch

from horovod_distq.torch import DistQ
from tests.parallel.common import DISAGREEING_SETTINGS, disagreement_reported


def step_with(compression: DistQ, dtype: torch.dtype = torch.float32) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 32).to(dtype)
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), named_parameters=model.named_parameters(),
        compression=compression,
    )
    model(torch.randn(8, 64, dtype=dtype)).sum().backward()
    optimizer.step()


@pytest.mark.parametrize("setting", DISAGREEING_SETTINGS)
def test_disagreeing_settings_fail_in_the_step(setting: str) -> None:
    # Making DistQ runs no collective: the step's allreduce or exchange header tells.
    with disagreement_reported(RuntimeError):
        step_with(DistQ(ratio=0.01, **{setting: DISAGREEING_SETTINGS[setting][hvd.rank()]}))


def test_a_rank_without_distq_fails_in_the_step() -> None:
    # Rank 1 never makes a DistQ: nothing may wait for it.
    with disagreement_reported(RuntimeError):
        step_with(DistQ(ratio=0.01, min_numel=10) if hvd.rank() == 0 else hvd.Compression.none)


def test_disagreeing_gradient_dtypes_fail_in_the_exchange() -> None:
    # What settings cannot show, the exchange header does.
    dtype = torch.float32 if hvd.rank() == 0 else torch.float64
    with disagreement_reported(RuntimeError):
        step_with(DistQ(ratio=0.01, min_numel=10), dtype)


def test_different_ratios_are_fine() -> None:
    # Counts may differ per rank.
    step_with(DistQ(ratio=0.01 if hvd.rank() == 0 else 0.2, min_numel=10))
