"""One end-to-end run under ``horovodrun``: every method trains the same model for the same steps.

Started by ``python -m benchmarks e2e`` inside its shaped network namespace; rank 0
writes the JSON results to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import horovod.torch as hvd
import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.baselines import TopK
from examples.common import bytes_per_step, digits_split
from examples.torch_models import MODELS, as_tensors
from horovod_distq.exchange_policy import SETTLE_STEPS, ExchangePolicy
from horovod_distq.torch import DistQ

METHODS = ("dense", "fp16", "topk", "distq", "distq-float16", "distq-bfloat16", "distq-sign", "distq-auto",
           "distq-two-phase")


def make_compression(method: str, ratio: float):
    """The method's compressor. DistQ and top-k without the sparsity warm-up: the timed steps are at
    the target ratio, not in the warm-up's first steps. "distq" and its encodings always send
    sparse by the allgather; "distq-auto" is DistQ as it comes (``exchange="auto"``: chosen from
    measured step times), "distq-two-phase" the two-phase exchange."""
    if method == "dense":
        return hvd.Compression.none
    if method == "fp16":
        return hvd.Compression.fp16
    if method == "topk":
        return TopK(ratio=ratio, warmup=None)
    if method == "distq-auto":
        return DistQ(ratio=ratio, warmup=None)
    if method == "distq-two-phase":
        return DistQ(ratio=ratio, exchange="two_phase", warmup=None)
    encoding = method.split("-", 1)[1] if "-" in method else "auto"
    return DistQ(ratio=ratio, value_encoding=encoding, warmup=None, exchange="sparse")


def untimed_steps(method: str, args: argparse.Namespace) -> int:
    """Steps run before the timed ones: ``--warmup``, and for "distq-auto" until its first choice
    of exchange is made (its probe's steps are a fixed cost, once every ``reprobe_every`` steps)."""
    if method != "distq-auto":
        return args.warmup
    probe = SETTLE_STEPS + len(("allgather", "two_phase", "dense")) * ExchangePolicy.default_probe_steps
    return max(args.warmup, probe + 1)


def train(method: str, args: argparse.Namespace, data) -> dict:
    torch.manual_seed(args.seed)
    model = MODELS[args.model]()
    compression = make_compression(method, args.ratio)
    step = horovod_step(model, compression, args.lr, momentum=0.9)
    timed = timed_steps(argparse.Namespace(**{**vars(args), "warmup": untimed_steps(method, args)}), data, hvd.rank(),
                        hvd.barrier, step)
    tail = torch.tensor(float(np.mean(timed.losses[-args.loss_window:])))
    numels = [p.numel() for p in model.parameters()]
    final_loss = hvd.allreduce(tail, name=f"loss.{method}").item()
    result = record("horovod", method, args, numels, timed, final_loss, bytes_per_step(compression, numels, hvd))
    decision = getattr(compression, "exchange_policy", None) and compression.exchange_policy.last_decision
    if decision:
        step_ms = {mode: seconds * 1e3 for mode, seconds in decision.costs.items()}
        result["exchange_chosen"] = {"chosen": decision.chosen, "step_ms": step_ms}
    return result


def horovod_step(model: torch.nn.Module, compression, lr: float,
                 momentum: float = 0.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """One training step of ``model`` with SGD through Horovod's optimizer and ``compression``."""
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum),
        named_parameters=model.named_parameters(), compression=compression,
    )
    return sgd_step(model, optimizer)


def sgd_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Callable[[torch.Tensor, torch.Tensor],
                                                                                    torch.Tensor]:
    """One training step of ``model`` on a batch with ``optimizer``; returns the loss."""

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return step


class TimedSteps(NamedTuple):
    """What :func:`timed_steps` measured after its warm-up steps."""

    seconds: list[float]
    losses: list[float]
    link_bytes_per_step: float | None  # this host's NIC, by the kernel's count; None off a cluster


def timed_steps(args: argparse.Namespace, data, rank: int, barrier: Callable[[], Any],
                step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> TimedSteps:
    """Runs ``args.warmup + args.steps`` training steps on random batches (this rank's own draw),
    each started on every rank together; returns each step's seconds and loss after the warm-up,
    and the bytes this host's NIC sent per step meanwhile."""
    train_x, train_y, _, _ = data
    generator = torch.Generator().manual_seed(args.seed + rank)
    step_seconds, losses = [], []
    sent_before = None
    for index in range(args.warmup + args.steps):
        batch = torch.randint(0, len(train_x), (args.batch_size,), generator=generator)
        barrier()  # steps start together, so a step's time is the slowest rank's
        if index == args.warmup:
            sent_before = nic_sent_bytes()
        start = time.perf_counter()
        loss = step(train_x[batch], train_y[batch])
        if index >= args.warmup:
            step_seconds.append(time.perf_counter() - start)
            losses.append(loss.item())
    sent_after = nic_sent_bytes()
    link = None if sent_before is None or sent_after is None else (sent_after - sent_before) / args.steps
    return TimedSteps(step_seconds, losses, link)


def nic_sent_bytes() -> int | None:
    """Bytes sent so far by the interface the job's Gloo uses, as the kernel counts them (headers
    and all), where that is a NIC of its own (a cluster host's eth0); None on loopback or unknown."""
    interface = os.environ.get("HOROVOD_GLOO_IFACE") or os.environ.get("GLOO_SOCKET_IFNAME")
    counter = Path(f"/sys/class/net/{interface}/statistics/tx_bytes")
    if not interface or interface == "lo" or not counter.exists():
        return None
    return int(counter.read_text())


def compute_ms(args: argparse.Namespace, data, rank: int, barrier: Callable[[], Any]) -> float:
    """Median milliseconds of a training step of ``args.model`` with no communication at all (plain
    SGD), every rank stepping at once as in training: the compute part of the timed steps."""
    torch.manual_seed(args.seed)
    model = MODELS[args.model]()
    step = sgd_step(model, torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9))
    return float(np.median(timed_steps(args, data, rank, barrier, step).seconds)) * 1e3


def record(engine: str, method: str, args: argparse.Namespace, numels: list[int], timed: TimedSteps,
           final_loss: float, bytes_sent: int) -> dict:
    """One method's result."""
    return {
        "engine": engine,
        "method": method,
        "model": args.model,
        "parameters": sum(numels),
        "steps": args.steps,
        "step_ms_median": float(np.median(timed.seconds)) * 1e3,
        "final_loss": final_loss,
        "bytes_sent_last_step": bytes_sent,
        "link_bytes_per_step": timed.link_bytes_per_step,
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


def run_methods(args: argparse.Namespace, train: Callable[[str, argparse.Namespace, Any], dict], rank: int,
                barrier: Callable[[], Any]) -> None:
    """Trains with every method of ``args.methods`` in turn, on one thread; rank 0 writes the records,
    each with the model's step time without communication (``compute_ms_median``), to --out."""
    torch.set_num_threads(1)
    data = as_tensors(digits_split(args.seed))
    compute = compute_ms(args, data, rank, barrier)
    results = [{**train(method, args, data), "compute_ms_median": compute} for method in args.methods]
    if rank == 0:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


def main() -> None:
    args = arguments(__doc__, METHODS).parse_args()
    hvd.init()
    run_methods(args, train, hvd.rank(), hvd.barrier)


if __name__ == "__main__":
    main()
