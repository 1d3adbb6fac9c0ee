"""Ranks that disagree on which tensors are sparse, or how, must fail with an error, not hang.

Run under ``horovodrun -np 2``.
"""

from __future__ import annotations

import horovod.torch as hvd
import torch

from horovod_distq.torch import DistQ


def step_with(compression: DistQ) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 32)
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), named_parameters=model.named_parameters(),
        compression=compression,
    )
    model(torch.randn(8, 64)).sum().backward()
    optimizer.step()


def expect_error(compression: DistQ, error_type: type[Exception], message: str, what: str) -> None:
    try:
        step_with(compression)
    except error_type as error:
        assert message in str(error), error
        print(f"rank {hvd.rank()}: {what}: disagreement reported: {error}", flush=True)
        return
    raise AssertionError(f"{what}: went unnoticed")


def main() -> None:
    hvd.init()
    # Rank 0 compresses the weight, rank 1 sends it dense: Horovod's allreduce shapes differ.
    expect_error(DistQ(ratio=0.01, min_numel=100 if hvd.rank() == 0 else 10_000),
                 hvd.HorovodInternalError, "Mismatched", "sparse path")
    # Both compress it, with different value encodings: DistQ's own header check.
    expect_error(DistQ(ratio=0.01, min_numel=100, value_encoding="float16" if hvd.rank() == 0 else "sign"),
                 RuntimeError, "Give every rank the same DistQ settings", "value encoding")


if __name__ == "__main__":
    main()
