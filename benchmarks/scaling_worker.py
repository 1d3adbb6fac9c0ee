"""One launch of the scaling suite under ``horovodrun -np P``: dense, DistQ always sparse, DistQ
``exchange="auto"``'s byte rule and DistQ ``exchange="two_phase"`` train the same model; rank 0 writes each one's
step time and the bytes its exchange moved to --out.

Started by ``python -m benchmarks scaling`` (benchmarks/scaling.py), once per P.
"""

from __future__ import annotations

import argparse

import horovod.torch as hvd
import numpy as np
import torch

from benchmarks.e2e_worker import arguments, horovod_step, run_methods, timed_steps
from examples.torch_models import MODELS
from horovod_distq.exchange_cost import dense_link_bytes
from horovod_distq.torch import DistQ

METHODS = ("dense", "distq-sparse", "distq-auto", "distq-two_phase")


def train(method: str, args: argparse.Namespace, data) -> dict:
    torch.manual_seed(args.seed)
    model = MODELS[args.model]()
    # Without the sparsity warm-up: the timed steps are at the target ratio.
    compression = (hvd.Compression.none if method == "dense"
                   else DistQ(ratio=args.ratio, exchange=method.removeprefix("distq-"), warmup=None))
    if method == "distq-auto":
        # This suite measures bytes: auto's byte rule, not its choice by step time (the e2e suite's).
        compression.exchange_policy = None
    seconds = timed_steps(args, data, hvd.rank(), hvd.barrier, horovod_step(model, compression, args.lr)).seconds
    # Bytes on this rank's link in the last step: the ring allreduce of what went dense, and what
    # the round's collectives brought in from the other ranks.
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
    args = arguments(__doc__, METHODS).parse_args()
    hvd.init()
    run_methods(args, train, hvd.rank(), hvd.barrier)


if __name__ == "__main__":
    main()
