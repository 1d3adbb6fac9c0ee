"""Trains a small model with DistQ under horovodrun until stopped, printing each step: the job that
tests/test_cluster.py kills a host of. It gives up by itself after ``--seconds``."""

from __future__ import annotations

import argparse
import time

import horovod.torch as hvd
import torch

from horovod_distq.torch import DistQ


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=300)
    args = parser.parse_args()
    hvd.init()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    optimizer = hvd.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=0.01),
                                         named_parameters=model.named_parameters(), compression=DistQ(ratio=0.01))
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    generator = torch.Generator().manual_seed(hvd.rank())
    deadline = time.monotonic() + args.seconds
    step = 0
    while time.monotonic() < deadline:
        x, y = torch.randn(64, 256, generator=generator), torch.randint(0, 10, (64,), generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        step += 1
        print(f"step {step}", flush=True)
        time.sleep(0.05)


if __name__ == "__main__":
    main()
