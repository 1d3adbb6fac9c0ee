"""Ranks that disagree on which tensors are sparse, or how, must fail with an error, not hang.

Every rank runs this file with pytest under ``horovodrun -np 2`` (tests/test_parallel_torch.py).
"""

from __future__ import annotations

import horovod.torch as hvd
import pytest
import torch
import torch.nn.functional as F

from horovod_distq import wire
from horovod_distq.compressor import EncodedPairs
from horovod_distq.torch import DistQ, two_phase_exchange
from horovod_distq.torch.exchange import pack_round
from tests.parallel.common import DISAGREEING_SETTINGS, disagreement_reported
from tests.parallel.torch_optimizer_check import all_ranks, check_close
from tests.torch_reference import selected_part


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


def test_a_misrouted_share_fails_on_every_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """exchange="two_phase": rank 1 hands all its pairs to rank 0, half of them entries rank 0 does
    not own. Rank 0's check fails; it still joins the second phase (with a header naming no round),
    so rank 1 fails there too instead of waiting."""
    if hvd.rank() == 1:
        monkeypatch.setattr(two_phase_exchange, "split_by_owner", _all_to_rank_0)
    expected = "it does not own" if hvd.rank() == 0 else "rank 0 compressed other tensors"
    with pytest.raises(wire.DistQExchangeError, match=expected):
        step_with(DistQ(ratio=0.05, min_numel=10, exchange="two_phase"))


def _all_to_rank_0(round_layout, pairs, ranks):
    """A first phase that hands rank 0 every pair (what split_by_owner returns)."""
    nothing = [EncodedPairs(p.indices[:0], p.values[:0], p.scales, p.decoded[:0]) for p in pairs]
    shares = [torch.cat(pack_round(round_layout, pairs if owner == 0 else nothing)) for owner in range(ranks)]
    return torch.cat(shares), [share.numel() for share in shares]


def test_different_ratios_are_fine() -> None:
    """Rank 0 keeps 1% of each gradient, rank 1 20%: the ranks send unequal counts, where a wrong
    per-rank offset into the gathered pairs would show (SIDCo's code splits them evenly). Every
    rank's reduced gradients must be the average of each rank's own selection, built here from the
    ranks' raw gradients (exchanged densely) by the reference rule at each rank's ratio."""
    compression = DistQ(ratio=0.01 if hvd.rank() == 0 else 0.2, min_numel=10, warmup=None)
    torch.manual_seed(0)  # the same initial weights on every rank
    model = torch.nn.Linear(64, 32)
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), named_parameters=model.named_parameters(),
        compression=compression,
    )
    generator = torch.Generator().manual_seed(hvd.rank())  # each rank its own batch, so its own gradients
    x, y = torch.randn(8, 64, generator=generator), torch.randn(8, 32, generator=generator)
    names, params = zip(*model.named_parameters())
    raw = torch.autograd.grad(F.mse_loss(model(x), y), params)  # plain autograd: no hooks, no exchange
    F.mse_loss(model(x), y).backward()
    optimizer.synchronize()
    counts = all_ranks(torch.tensor([compression.stats[name].selected for name in names]))
    assert bool((counts[0] < counts[1]).all()), f"the ranks' counts {counts} do not differ as their ratios do"
    for name, param, grad in zip(names, params, raw):
        assert compression.compresses(param), name
        sent = selected_part(grad, compression)  # a new DistQ's first step fits at its target ratio
        assert int((sent != 0).sum()) == compression.stats[name].selected, name
        check_close(param.grad, torch.stack(all_ranks(sent)).mean(0), f"{name} at ratios 0.01 and 0.2")
