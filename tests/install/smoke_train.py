"""A 2-worker smoke run of an installed horovod-distq, run from outside the source tree.

Every rank checks that it imported the package from the environment it was installed into (not
a checkout), trains a small model a few steps with ``DistQ(ratio=1.0, exchange="sparse")`` (every
entry travels as pairs, so the reduced gradient must equal a dense average) and compares each
reduced gradient with Horovod's dense allreduce of the same gradient. Exits non-zero on a mismatch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import horovod.torch as hvd
import torch

import horovod_distq
import horovod_distq.torch as distq


def main() -> None:
    hvd.init()
    installed_in = Path(horovod_distq.__file__).resolve()
    if Path(sys.prefix).resolve() not in installed_in.parents:
        sys.exit(f"rank {hvd.rank()}: horovod_distq came from {installed_in}, not from the environment {sys.prefix}")
    torch.manual_seed(hvd.rank())
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    compression = distq.DistQ(ratio=1.0, exchange="sparse", min_numel=1000)
    optimizer = hvd.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1),
                                         named_parameters=model.named_parameters(), compression=compression)
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    for step in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.randn(16, 64)), torch.randint(0, 4, (16,)))
        # This rank's own gradients, taken before backward() (Horovod reduces .grad in place, in
        # the background, as soon as each is accumulated).
        names, parameters = zip(*model.named_parameters())
        local = dict(zip(names, torch.autograd.grad(loss, parameters, retain_graph=True)))
        loss.backward()
        optimizer.synchronize()
        for name, parameter in model.named_parameters():
            dense = hvd.allreduce(local[name], name=f"reference.{step}.{name}")
            if not torch.allclose(parameter.grad, dense, rtol=1e-5, atol=1e-7):
                sys.exit(f"rank {hvd.rank()}: step {step}: {name}'s reduced gradient differs from the dense average")
        with optimizer.skip_synchronize():
            optimizer.step()
    sparse = [name for name, stats in compression.stats.items() if not stats.dense]
    if sparse != ["0.weight"]:
        sys.exit(f"rank {hvd.rank()}: expected 0.weight alone to go sparse, got {sparse}")
    print(f"rank {hvd.rank()}: installed horovod_distq {horovod_distq.__version__} from {installed_in.parent} ok")


if __name__ == "__main__":
    main()
