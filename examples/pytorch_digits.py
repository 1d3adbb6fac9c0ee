"""Train a small CNN on scikit-learn's bundled digits with Horovod, dense and with DistQ.

Run on 2 local workers (what ``make demo`` does):

    horovodrun -np 2 -H localhost:2 --gloo .venv/bin/python examples/pytorch_digits.py \
        --compression none distq --out runs/digits

Each listed compression trains the same model from the same initial weights on the same data
shards. Rank 0 prints test accuracy and the bytes each worker sent per step, and saves one
checkpoint per run (model, optimizer and DistQ state) plus ``summary.json``.
"""

from __future__ import annotations

import argparse
import time

import horovod.torch as hvd
import numpy as np
import torch
import torch.nn.functional as F

from horovod_distq.bench.examples import checkpoint_contents, parse_arguments, print_and_save
from horovod_distq.bench.models import DigitsCNN, load_digits_split
from horovod_distq.torch import DistQ


def make_compression(kind: str, args: argparse.Namespace):
    if kind == "none":
        return hvd.Compression.none
    if kind == "fp16":
        return hvd.Compression.fp16
    return DistQ(ratio=args.ratio, distribution=args.distribution, value_encoding=args.value_encoding)


def bytes_per_step(model: torch.nn.Module, compression) -> int:
    """Bytes this worker contributed to the collectives in the last step."""
    if isinstance(compression, DistQ):
        return compression.bytes_sent
    itemsize = 2 if compression is hvd.Compression.fp16 else 4
    return sum(p.numel() * itemsize for p in model.parameters())


def train(kind: str, args: argparse.Namespace, data) -> dict:
    train_x, train_y, test_x, test_y = data
    torch.manual_seed(args.seed)
    model = DigitsCNN()
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    compression = make_compression(kind, args)
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9),
        named_parameters=model.named_parameters(),
        compression=compression,
    )
    shard_x, shard_y = train_x[hvd.rank() :: hvd.size()], train_y[hvd.rank() :: hvd.size()]
    generator = torch.Generator().manual_seed(args.seed + hvd.rank())
    steps, sent, started = 0, [], time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(len(shard_x), generator=generator)
        # Every rank runs the same number of steps: allreduce has no partial participation.
        for start in range(0, len(order) - args.batch_size + 1, args.batch_size):
            batch = order[start : start + args.batch_size]
            optimizer.zero_grad()
            F.cross_entropy(model(shard_x[batch]), shard_y[batch]).backward()
            optimizer.step()
            sent.append(bytes_per_step(model, compression))
            steps += 1
    elapsed = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    result = {
        "compression": kind,
        "test_accuracy": accuracy,
        "steps": steps,
        "bytes_sent_per_step": float(np.mean(sent)),
        "seconds": elapsed,
    }
    if isinstance(compression, DistQ):
        sparse = [s for s in compression.stats.values() if not s.dense]
        result["achieved_ratio"] = float(np.mean([s.achieved_ratio for s in sparse]))
        result.update(ratio=args.ratio, distribution=args.distribution, value_encoding=args.value_encoding)
    if hvd.rank() == 0:
        checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
        if isinstance(compression, DistQ):
            checkpoint["distq"] = compression.state_dict()
        path = args.out / f"{kind}.pt"
        torch.save(checkpoint, path)
        result.update(checkpoint=str(path), contents=checkpoint_contents(isinstance(compression, DistQ)))
    return result


def main() -> None:
    args = parse_arguments(__doc__, "runs/digits")

    hvd.init()
    torch.set_num_threads(1)  # one core per worker
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_digits_split(args.seed)
    results = [train(kind, args, data) for kind in args.compression]
    if hvd.rank() != 0:
        return
    print_and_save(results, hvd.size(), args.out)


if __name__ == "__main__":
    main()
