"""Ranks that disagree on which tensors are sparse, or how, must fail with an error, not hang.

Run under ``horovodrun -np 2``.
"""

from __future__ import annotations

import horovod.torch as hvd
import torch

from horovod_distq.torch import DistQ

SETTINGS_MESSAGE = "Give every rank the same DistQ settings"


def step_with(compression: DistQ, dtype: torch.dtype = torch.float32) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 32).to(dtype)
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), named_parameters=model.named_parameters(),
        compression=compression,
    )
    model(torch.randn(8, 64, dtype=dtype)).sum().backward()
    optimizer.step()


def expect_error(action, error_type: type[Exception], what: str) -> None:
    try:
        action()
    except error_type as error:
        assert SETTINGS_MESSAGE in str(error), error
        print(f"rank {hvd.rank()}: {what}: disagreement reported: {error}", flush=True)
        return
    raise AssertionError(f"{what}: went unnoticed")


def main() -> None:
    hvd.init()
    # Settings that decide which tensors are sparse, or how values travel, are compared when the
    # compressor is made: rank 0 would compress the weight, rank 1 send it dense.
    expect_error(lambda: DistQ(ratio=0.01, min_numel=100 if hvd.rank() == 0 else 10_000), ValueError, "min_numel")
    expect_error(lambda: DistQ(ratio=0.01, value_encoding="float16" if hvd.rank() == 0 else "sign"), ValueError,
                 "value encoding")
    # What settings cannot show, the exchange header does: here the gradients' dtypes differ.
    dtype = torch.float32 if hvd.rank() == 0 else torch.float64
    expect_error(lambda: step_with(DistQ(ratio=0.01, min_numel=10), dtype), RuntimeError, "gradient dtype")
    # Different ratios are fine: counts may differ per rank.
    step_with(DistQ(ratio=0.01 if hvd.rank() == 0 else 0.2, min_numel=10))
    print(f"rank {hvd.rank()}: different ratios: fine", flush=True)


if __name__ == "__main__":
    main()
