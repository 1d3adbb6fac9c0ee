"""DistQ under Horovod started on mpi4py sub-communicators, as MPI programs embed Horovod.

Run by ``mpirun -np 4`` (tests/test_mpi4py.py). The world is split into two sub-worlds of 2 ranks
and ``hvd.init(comm=sub)`` gives each its own Horovod; each trains the same initial model on its own
data with DistQ inside ``hvd.DistributedOptimizer``. Each step, every reduced gradient is checked
against a reference whose cross-rank sums come from mpi4py on the sub-communicator, not from Horovod:
what a rank sent is its accumulated gradient minus its new residual (error feedback), it must be what
the NumPy reference rule selects, and the reduced gradient must be the sub-world's mean of it (dense
gradients: the mean of the raw ones). The sub-worlds must end at different parameters, each
identical on its two ranks: they trained independently.

On a mismatch a rank prints why and aborts the whole job (MPI_Abort), so that no rank waits for ever
in a collective its failed peer never joins. On success each rank prints one line.
``DISTQ_MPI4PY_PERTURB=1`` perturbs world rank 3's reference, to show that the check can fail.
"""

from __future__ import annotations

import copy
import os
import sys
from typing import NoReturn

import horovod.torch as hvd
import numpy as np
import torch
from mpi4py import MPI  # initialises MPI (thread level MULTIPLE); hvd.init(comm=...) finds it running

from horovod_distq.torch import DistQ
from tests.torch_reference import selected_part

STEPS = 4
RATIO = 0.05
PERTURBED_RANK = 3
WORLD = MPI.COMM_WORLD


def fail(message: str) -> NoReturn:
    """Reports a mismatch and ends every rank of both sub-worlds, with exit code 1."""
    print(f"MISMATCH: {message}", file=sys.stderr, flush=True)
    WORLD.Abort(1)
    raise SystemExit(1)  # not reached: Abort ends the process


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)  # the same initial parameters on every rank of both sub-worlds
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(), torch.nn.Linear(128, 10))


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Data of this world rank: different on every rank, so also in each sub-world."""
    generator = torch.Generator().manual_seed(1000 * WORLD.Get_rank() + step)
    return torch.randn(32, 64, generator=generator), torch.randint(0, 10, (32,), generator=generator)


def loss_of(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(model(x), y)


def raw_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """This rank's gradients by plain autograd: no hooks, no exchange."""
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad(loss_of(model, x, y), params)
    return {name: grad.detach().clone() for name, grad in zip(names, grads)}


def sub_world_mean(sub: MPI.Intracomm, tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over the sub-world's ranks, summed by MPI itself (mpi4py's Allreduce)."""
    local = np.ascontiguousarray(tensor.numpy(), dtype=np.float32)
    total = np.empty_like(local)
    sub.Allreduce(local, total, op=MPI.SUM)
    return torch.from_numpy(total / sub.Get_size())


def check_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    if not torch.allclose(actual, expected, rtol=1e-5, atol=1e-7):
        fail(f"{what}: max abs difference {(actual - expected).abs().max().item():g}")


def train_and_check(sub: MPI.Intracomm, where: str) -> torch.Tensor:
    """Trains STEPS steps, checking every reduced gradient; returns the final parameters, flattened."""
    model = make_model()
    shadow = copy.deepcopy(model)
    compression = DistQ(ratio=RATIO, warmup=None, exchange="sparse")
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), named_parameters=model.named_parameters(),
        compression=compression,
    )
    perturb = os.environ.get("DISTQ_MPI4PY_PERTURB") == "1" and WORLD.Get_rank() == PERTURBED_RANK
    for step in range(STEPS):
        x, y = batch(step)
        shadow.load_state_dict(model.state_dict())
        raw = raw_gradients(shadow, x, y)
        # Residuals are updated in place: copy them before the step.
        before = {name: (r.clone() if (r := compression.memory.residual(name)) is not None else torch.zeros_like(g))
                  for name, g in raw.items()}
        fit_ratios = {name: compression.controller.fit_ratio(name) for name in raw}
        optimizer.zero_grad()
        loss_of(model, x, y).backward()
        optimizer.synchronize()
        sparse = 0
        for name, param in model.named_parameters():
            what = f"{where}: {name} step {step}"
            if compression.compresses(param):
                sparse += 1
                accumulated = raw[name] + before[name]
                sent = accumulated - compression.memory.residual(name)
                check_close(sent, selected_part(accumulated, compression, fit_ratios[name]),
                            f"{what}: what this rank sent is not the reference selection")
                expected = sub_world_mean(sub, sent)
            else:
                expected = sub_world_mean(sub, raw[name])
            if perturb:
                expected = expected + 1e-3
            check_close(param.grad, expected, f"{what}: reduced gradient differs from the mpi4py reference")
        if sparse != 2:
            fail(f"{where}: {sparse} tensors went sparse, expected the 2 weights")
        with optimizer.skip_synchronize():
            optimizer.step()
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def main() -> None:
    world_rank = WORLD.Get_rank()
    if WORLD.Get_size() != 4:
        fail(f"world rank {world_rank}: run with mpirun -np 4, not {WORLD.Get_size()}")
    color = world_rank // 2
    sub = WORLD.Split(color=color, key=world_rank)
    hvd.init(comm=sub)
    where = f"world rank {world_rank} (sub-world {color}, rank {sub.Get_rank()})"
    if (hvd.size(), hvd.rank()) != (2, sub.Get_rank()):
        fail(f"{where}: Horovod says rank {hvd.rank()} of {hvd.size()}, expected the sub-world's {sub.Get_rank()} of 2")

    parameters = train_and_check(sub, where)
    # Identical within the sub-world; different across sub-worlds (independent training).
    everyone = WORLD.allgather(parameters.numpy())
    if not np.array_equal(everyone[2 * color], everyone[2 * color + 1]):
        fail(f"{where}: the two ranks of sub-world {color} ended at different parameters")
    if np.array_equal(everyone[0], everyone[2]):
        fail(f"{where}: both sub-worlds ended at the same parameters: they did not train independently")
    print(f"{where}: Horovod rank {hvd.rank()} of {hvd.size()}, {STEPS} steps match the mpi4py reference; "
          f"parameter checksum {float(parameters.double().sum()):.9g}", flush=True)
    hvd.shutdown()


if __name__ == "__main__":
    main()
