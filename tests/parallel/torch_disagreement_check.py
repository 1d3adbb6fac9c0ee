"""Ranks that disagree on which tensors are sparse must fail with Horovod's error, not hang.

Run under ``horovodrun -np 2``: rank 0 compresses the weight, rank 1 sends it dense.
"""

from __future__ import annotations

import horovod.torch as hvd
import torch

from horovod_distq.torch import DistQ


def main() -> None:
    hvd.init()
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 32)
    compression = DistQ(ratio=0.01, min_numel=100 if hvd.rank() == 0 else 10_000)
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), named_parameters=model.named_parameters(),
        compression=compression,
    )
    model(torch.randn(8, 64)).sum().backward()
    try:
        optimizer.step()
    except hvd.HorovodInternalError as error:
        assert "Mismatched" in str(error), error
        print(f"rank {hvd.rank()}: disagreement reported: {error}", flush=True)
        return
    raise AssertionError("ranks disagreeing on the sparse path went unnoticed")


if __name__ == "__main__":
    main()
