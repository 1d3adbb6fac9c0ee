"""One end-to-end run under ``horovodrun``: every method trains the same model for the same steps.

Started by ``python -m benchmarks e2e`` inside its shaped network namespace; rank 0
writes the JSON results to --out.
"""

from __future__ import annotations

import argparse
import json
import time

import horovod.torch as hvd
import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.baselines import TopK
from examples.common import bytes_per_step, digits_split
from examples.torch_models import MODELS, as_tensors
from horovod_distq.torch import DistQ

METHODS = ("dense", "fp16", "topk", "distq", "distq-float16", "distq-bfloat16", "distq-sign", "distq-auto")


def make_compression(method: str, ratio: float):
    if method == "dense":
        return hvd.Compression.none
    if method == "fp16":
        return hvd.Compression.fp16
    if method == "topk":
        return TopK(ratio=ratio)
    if method == "distq-auto":
        return DistQ(ratio=ratio, distribution="auto")
    encoding = method.split("-", 1)[1] if "-" in method else "auto"
    return DistQ(ratio=ratio, value_encoding=encoding)


def train(method: str, args: argparse.Namespace, data) -> dict:
    train_x, train_y, _, _ = data
    torch.manual_seed(args.seed)
    model = MODELS[args.model]()
    compression = make_compression(method, args.ratio)
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9),
        named_parameters=model.named_parameters(), compression=compression,
    )
    generator = torch.Generator().manual_seed(args.seed + hvd.rank())
    step_seconds, losses = [], []
    for step in range(args.warmup + args.steps):
        batch = torch.randint(0, len(train_x), (args.batch_size,), generator=generator)
        hvd.barrier()  # steps start together, so a step's time is the slowest rank's
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = F.cross_entropy(model(train_x[batch]), train_y[batch])
        loss.backward()
        optimizer.step()
        if step >= args.warmup:
            step_seconds.append(time.perf_counter() - start)
            losses.append(loss.item())
    tail = torch.tensor(float(np.mean(losses[-args.loss_window:])))
    numels = [p.numel() for p in model.parameters()]
    return {
        "engine": "horovod",
        "method": method,
        "model": args.model,
        "parameters": sum(numels),
        "steps": args.steps,
        "step_ms_median": float(np.median(step_seconds)) * 1e3,
        "final_loss": hvd.allreduce(tail, name=f"loss.{method}").item(),
        "bytes_sent_last_step": bytes_per_step(compression, numels, hvd),
    }


def arguments(description: str, methods: tuple[str, ...]) -> argparse.ArgumentParser:
    """The command line of an end-to-end worker (this one, and the DDP one in ``benchmarks.ddp_worker``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--methods", nargs="+", default=list(methods), choices=methods)
    parser.add_argument("--ratio", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--loss-window", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    return parser


def main() -> None:
    parser = arguments(__doc__, METHODS)
    args = parser.parse_args()
    hvd.init()
    torch.set_num_threads(1)
    data = as_tensors(digits_split(args.seed))
    results = [train(method, args, data) for method in args.methods]
    if hvd.rank() == 0:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
