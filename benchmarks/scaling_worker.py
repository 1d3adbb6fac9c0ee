"""One launch of the scaling suite under ``horovodrun -np P``: dense, DistQ always sparse and DistQ
``exchange="auto"`` train the same model; rank 0 writes each one's step time and the bytes its
exchange moved to --out.

Started by ``python -m benchmarks scaling`` (benchmarks/scaling.py), once per P.
"""

from __future__ import annotations

import argparse
import json

import horovod.torch as hvd
import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.e2e_worker import timed_steps
from examples.common import digits_split
from examples.torch_models import MODELS, as_tensors
from horovod_distq.exchange_cost import dense_link_bytes
from horovod_distq.torch import DistQ

METHODS = ("dense", "distq-sparse", "distq-auto")


def train(method: str, args: argparse.Namespace, data) -> dict:
    torch.manual_seed(args.seed)
    model = MODELS[args.model]()
    compression = hvd.Compression.none if method == "dense" else DistQ(ratio=args.ratio, exchange=method.split("-")[1])
    optimizer = hvd.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=args.lr),
                                         named_parameters=model.named_parameters(), compression=compression)

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    seconds, _ = timed_steps(args, data, hvd.rank(), hvd.barrier, step)
    # Bytes on this rank's link in the last step: the ring allreduce of what went dense, and what
    # the round's allgather brought in from the other ranks.
    if method == "dense":
        dense = [p.numel() for p in model.parameters()]
        received = 0
    else:
        dense = [s.numel for s in compression.stats.values() if s.dense]
        received = compression.last_round.bytes_received if compression.last_round else 0
    link = sum(dense_link_bytes(n, hvd.size(), "float32") for n in dense) + received
    return {"method": method, "model": args.model, "ranks": hvd.size(), "ratio": args.ratio,
            "step_ms_median": float(np.median(seconds)) * 1e3, "link_bytes_per_step": link,
            "sparse_tensors": 0 if method == "dense" else sum(not s.dense for s in compression.stats.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=sorted(MODELS), default="digits_cnn")
    parser.add_argument("--ratio", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    hvd.init()
    torch.set_num_threads(1)
    data = as_tensors(digits_split(args.seed))
    records = [train(method, args, data) for method in METHODS]
    if hvd.rank() == 0:
        with open(args.out, "w") as file:
            json.dump(records, file, indent=2)


if __name__ == "__main__":
    main()
