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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import common
import horovod.torch as hvd
import torch
import torch.nn.functional as F
from torch_models import DigitsCNN, as_tensors

from horovod_distq.torch import DistQ

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """This example's command line (``common.parse_arguments``), runs saved under runs/digits by default."""
    return common.parse_arguments(__doc__, "runs/digits", argv=argv)


def telemetry_writer(logdir: Path) -> SummaryWriter:
    """TensorBoard's writer for ``--logdir``, imported only when asked for: ``torch.utils.tensorboard``
    imports TensorFlow where it is installed, and imported at the top it cost every worker seconds and
    printed pages of TensorFlow's and oneDNN's start-up logs in runs that log nothing to TensorBoard."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(logdir))


def train(kind: str, args: argparse.Namespace, data) -> dict:
    train_x, train_y, test_x, test_y = data
    torch.manual_seed(args.seed)
    model = DigitsCNN()
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    compression = common.make_compression(kind, args, hvd, DistQ)
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9),
        named_parameters=model.named_parameters(),
        compression=compression,
    )
    shard_x, shard_y = train_x[hvd.rank() :: hvd.size()], train_y[hvd.rank() :: hvd.size()]
    generator = torch.Generator().manual_seed(args.seed + hvd.rank())
    numels = [p.numel() for p in model.parameters()]
    sent, started = [], time.perf_counter()
    model.train()
    writer = telemetry_writer(args.logdir / kind) if common.logs_telemetry(args, compression, hvd) else None

    def permutation(n: int) -> torch.Tensor:
        return torch.randperm(n, generator=generator)

    for step, batch in enumerate(common.batches(args, len(shard_x), permutation, kind)):
        optimizer.zero_grad()
        F.cross_entropy(model(shard_x[batch]), shard_y[batch]).backward()
        optimizer.step()
        sent.append(common.bytes_per_step(compression, numels, hvd))
        if writer is not None:
            compression.log_to(writer, step)
    if writer is not None:
        writer.close()
    elapsed = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    result = common.run_record(kind, args, compression, accuracy, sent, elapsed)
    checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    if isinstance(compression, DistQ):
        # Every rank's residuals (a collective), so that rank 0's file resumes every rank exactly.
        checkpoint["distq"] = compression.state_dict(all_ranks=True)
    if hvd.rank() == 0:
        path = args.out / f"{kind}.pt"
        torch.save(checkpoint, path)
        result.update(checkpoint=str(path), contents=common.checkpoint_contents(isinstance(compression, DistQ)))
    return result


def main() -> None:
    args = parse_arguments()
    hvd.init()
    torch.set_num_threads(1)  # one core per worker
    common.run_all(args, hvd, train, as_tensors(common.digits_split(args.seed)))


if __name__ == "__main__":
    main()
