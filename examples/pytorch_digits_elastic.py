"""The digits CNN of ``pytorch_digits.py`` under Horovod's elastic mode, with DistQ: workers may
join and leave while it trains.

Run with one to two local workers; the discovery script prints the hosts Horovod may use (here
``localhost`` and ``127.0.0.1``, two names of this machine, one slot each):

    printf 'localhost:1\\n' > /tmp/hosts
    printf '#!/bin/sh\\ncat /tmp/hosts\\n' > /tmp/discover.sh && chmod +x /tmp/discover.sh
    horovodrun -np 1 --min-np 1 --max-np 2 --host-discovery-script /tmp/discover.sh \\
        --gloo --network-interface lo .venv/bin/python examples/pytorch_digits_elastic.py
    # meanwhile, in another shell: a second worker joins, then leaves
    printf 'localhost:1\\n127.0.0.1:1\\n' > /tmp/hosts;  sleep 20;  printf 'localhost:1\\n' > /tmp/hosts

DistQ's residuals and closed-loop state take part in ``state.commit()`` / ``restore()`` through
``horovod_distq.elastic.register``; a joining worker starts with empty residuals. Rank 0 prints
the world size, the loss and the test accuracy after every epoch.
"""

from __future__ import annotations

import common
import horovod.torch as hvd
import torch
import torch.nn.functional as F
from torch_models import DigitsCNN, as_tensors

from horovod_distq.elastic import register
from horovod_distq.torch import DistQ


def main() -> None:
    args = common.parse_elastic_arguments(__doc__)
    hvd.init()
    torch.set_num_threads(1)
    train_x, train_y, test_x, test_y = as_tensors(common.digits_split(0))
    torch.manual_seed(0)
    model = DigitsCNN()
    compression = DistQ(ratio=args.ratio)
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9),
        named_parameters=model.named_parameters(),
        compression=compression,
    )
    dataset = torch.utils.data.TensorDataset(train_x, train_y)
    # Horovod's sampler re-shards the data when the world changes and skips what was done.
    sampler = hvd.elastic.ElasticSampler(dataset, shuffle=True, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, sampler=sampler)
    state = register(hvd.elastic.TorchState(model=model, optimizer=optimizer, sampler=sampler, epoch=0), compression)
    state.register_reset_callbacks([lambda: hvd.rank() == 0 and print(f"reset: {hvd.size()} worker(s)", flush=True)])

    @hvd.elastic.run
    def train(state: hvd.elastic.TorchState) -> None:
        while state.epoch < args.epochs:
            model.train()
            for index, (x, y) in enumerate(loader):
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                optimizer.step()
                state.sampler.record_batch(index, args.batch_size)
                if index % args.commit_every == 0:
                    state.commit()
            model.eval()
            with torch.no_grad():
                accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
            if hvd.rank() == 0:
                print(f"epoch {state.epoch}: {hvd.size()} worker(s), loss {loss.item():.3f}, "
                      f"test accuracy {accuracy:.3f}", flush=True)
            state.epoch += 1
            state.sampler.set_epoch(state.epoch)
            state.commit()

    train(state)


if __name__ == "__main__":
    main()
