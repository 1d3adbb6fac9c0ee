"""Elastic training with DistQ under ``hvd.elastic.run``: one worker, then two, then one.

Run by tests/test_elastic.py under ``horovodrun --min-np 1 --max-np 2 --host-discovery-script``.
Each step checks that every rank holds the same parameters; rank 0 writes the log.
"""

from __future__ import annotations

import horovod.torch as hvd
import torch

from horovod_distq.elastic import register
from horovod_distq.torch import DistQ
from tests.elastic.common import Schedule, digest, end_step, parse_arguments, write_log

args = parse_arguments()
hvd.init()
torch.set_num_threads(1)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.Tanh(), torch.nn.Linear(64, 4))
teacher = torch.nn.Linear(32, 4)  # the task: the same on every rank, as the seed is
compression = DistQ(ratio=0.05, exchange=args.exchange)
optimizer = hvd.DistributedOptimizer(
    torch.optim.SGD(model.parameters(), lr=0.1), named_parameters=model.named_parameters(), compression=compression
)
schedule = Schedule(args.hosts_file, args.hosts)
state = register(
    hvd.elastic.TorchState(model=model, optimizer=optimizer, step=0, phase=0, in_phase=0, asked=[0.0, 0.0], log=[]),
    compression,
)


@hvd.elastic.run
def train(state: hvd.elastic.TorchState) -> None:
    while not schedule.finished(state):
        generator = torch.Generator().manual_seed(1000 * state.step + hvd.rank())
        x = torch.randn(64, 32, generator=generator)
        with torch.no_grad():
            y = teacher(x)
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        fingerprints = hvd.allgather_object(digest([p.detach().numpy() for p in model.parameters()]))
        mean_loss = hvd.allreduce(loss.detach(), name="elastic.loss").item()
        end_step(state, schedule, hvd.size(), hvd.rank(), mean_loss, fingerprints)


train(state)
if hvd.rank() == 0:
    write_log(state, args.out)
