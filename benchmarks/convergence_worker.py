"""One convergence run: every method trains the same model from the same weights on the same batches
for the same steps, on 2 workers (or as many as the launcher starts); rank 0 writes the validation
curves (with the training time up to each evaluation) and bytes per step to --out.

Horovod's methods (``--engine horovod``, under ``horovodrun``): dense, Horovod's fp16, exact top-k
with DistQ's exchange, error feedback and warm-up, DistQ as it comes (``DistQ(ratio)``), DistQ
without its sparsity warm-up, DistQ with a warm-up of ``--warmup-steps``, and DistQ with momentum
correction (``move_momentum``: the optimizer's momentum moved into DistQ; with the default
warm-up, Deep Gradient Compression's pair), and DistQ with local Adam (``move_adam``: Adam's moments
moved into DistQ, the optimizer plain SGD).
The optimizer is SGD with momentum (``--optimizer sgd``) or Adam (``--optimizer adam``); distq-momentum
runs with SGD only, distq-adam with Adam only. PowerSGD (``--engine ddp``, under ``torchrun``): torch's
``powerSGD_hook`` at rank R through torch.distributed on Gloo. Started by
``python -m benchmarks convergence`` (benchmarks/convergence.py) and by ``python -m benchmarks
time_to_accuracy`` (benchmarks/time_to_accuracy.py, which stops a run early with --stop-at-loss).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator

import horovod.torch as hvd
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook
from torch.nn.parallel import DistributedDataParallel

from benchmarks.baselines import TopK
from benchmarks.ddp_worker import counted_bytes, waited_for
from benchmarks.quality import CharTransformer, stdlib_text
from examples.common import bytes_per_step, digits_split
from examples.torch_models import DigitsCNN, as_tensors
from horovod_distq import Warmup
from horovod_distq.torch import DistQ, move_adam, move_momentum

HOROVOD_METHODS = ("dense", "fp16", "topk", "distq", "distq-no-warmup", "distq-warmup", "distq-momentum",
                   "distq-adam", "distq-two-phase")
DDP_METHODS = ("powersgd-2", "powersgd-4")
MOMENTUM = 0.9
# DistQ's pairs always travel sparse here, by the allgather: this suite compares what compression
# does to training at equal steps; which exchange is faster is the e2e suite's question.
SPARSE = "sparse"
LEARNING_RATES = {"digits_cnn": 0.05, "char_transformer": 0.1}
ADAM_LEARNING_RATE = 1e-3
OPTIMIZERS = ("sgd", "adam")
# Methods that take one optimizer's state over, and the optimizer they need.
OPTIMIZER_BOUND = {"distq-momentum": "sgd", "distq-adam": "adam"}
BATCH = {"digits_cnn": 32, "char_transformer": 16}
CONTEXT = 64
Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


def make_model(name: str) -> torch.nn.Module:
    return DigitsCNN() if name == "digits_cnn" else CharTransformer(context=CONTEXT)


def data(name: str, rank: int, seed: int) -> tuple[Batches, tuple[torch.Tensor, torch.Tensor]]:
    """This rank's training batches (its own draw) and the validation set every rank shares:
    digits' held-out 20%, or 64 fixed windows of the last 10% of the standard library's text."""
    generator = torch.Generator().manual_seed(seed * 1000 + rank)
    if name == "digits_cnn":
        train_x, train_y, test_x, test_y = as_tensors(digits_split(seed))

        def digits() -> Batches:
            while True:
                index = torch.randint(0, len(train_x), (BATCH[name],), generator=generator)
                yield train_x[index], train_y[index]
        return digits(), (test_x, test_y)
    text = stdlib_text()
    split = int(0.9 * len(text))
    starts = torch.linspace(split, len(text) - CONTEXT - 2, 64).long()
    held_out = torch.stack([text[s : s + CONTEXT + 1] for s in starts.tolist()])

    def windows() -> Batches:
        while True:
            start = torch.randint(0, split - CONTEXT - 1, (BATCH[name],), generator=generator)
            window = torch.stack([text[s : s + CONTEXT + 1] for s in start.tolist()])
            yield window[:, :-1], window[:, 1:]
    return windows(), (held_out[:, :-1], held_out[:, 1:])


def loss_of(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and the logits (one row per prediction)."""
    logits = model(inputs)
    logits = logits.reshape(-1, logits.shape[-1])
    return F.cross_entropy(logits, targets.reshape(-1)), logits


@torch.no_grad()
def evaluate(model: torch.nn.Module, validation: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    """Validation loss and accuracy (next byte, or digit)."""
    inputs, targets = validation
    loss, logits = loss_of(model, inputs, targets)
    return float(loss), float((logits.argmax(1) == targets.reshape(-1)).float().mean())


def local_optimizer(method: str, model: torch.nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """The method's optimizer: SGD with momentum, or Adam."""
    if OPTIMIZER_BOUND.get(method, args.optimizer) != args.optimizer:
        raise ValueError(f"{method} takes {OPTIMIZER_BOUND[method]}'s state over, not {args.optimizer}'s")
    if args.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=ADAM_LEARNING_RATE)
    return torch.optim.SGD(model.parameters(), lr=LEARNING_RATES[args.model], momentum=MOMENTUM)


def horovod_training(method: str, model: torch.nn.Module, args: argparse.Namespace):
    """Horovod's optimizer with the method's compression; returns the step (batch in, bytes sent out)."""
    local = local_optimizer(method, model, args)
    compressions = {
        "dense": lambda: hvd.Compression.none,
        "fp16": lambda: hvd.Compression.fp16,
        "topk": lambda: TopK(ratio=args.ratio),
        "distq": lambda: DistQ(ratio=args.ratio, exchange=SPARSE),
        "distq-no-warmup": lambda: DistQ(ratio=args.ratio, warmup=None, exchange=SPARSE),
        "distq-two-phase": lambda: DistQ(ratio=args.ratio, exchange="two_phase"),
        "distq-warmup": lambda: DistQ(ratio=args.ratio, warmup=Warmup(steps=args.warmup_steps), exchange=SPARSE),
        "distq-momentum": lambda: DistQ(ratio=args.ratio, momentum=move_momentum(local), exchange=SPARSE),
    }
    if method == "distq-adam":
        local, adam = move_adam(local)
        compressions[method] = lambda: DistQ(ratio=args.ratio, adam=adam, exchange=SPARSE)
    compression = compressions[method]()
    optimizer = hvd.DistributedOptimizer(local, named_parameters=model.named_parameters(), compression=compression)
    numels = [p.numel() for p in model.parameters()]

    def step(inputs: torch.Tensor, targets: torch.Tensor) -> int:
        optimizer.zero_grad()
        loss_of(model, inputs, targets)[0].backward()
        optimizer.step()
        return bytes_per_step(compression, numels, hvd)

    return step


def ddp_training(method: str, model: torch.nn.Module, args: argparse.Namespace):
    """DDP with torch's PowerSGD hook at the method's rank (compressing from step 2); returns the step
    (batch in, bytes put into the hook's collectives out)."""
    wrapped = DistributedDataParallel(model)
    state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=int(method.split("-")[1]),
                                        start_powerSGD_iter=2, random_seed=args.seed)
    wrapped.register_comm_hook(state, waited_for(powerSGD_hook.powerSGD_hook))
    optimizer = local_optimizer(method, wrapped, args)

    def step(inputs: torch.Tensor, targets: torch.Tensor) -> int:
        with counted_bytes() as counted:
            optimizer.zero_grad()
            loss_of(wrapped, inputs, targets)[0].backward()
            optimizer.step()
        return counted[0]

    return step


def train(method: str, args: argparse.Namespace, rank: int,
          training: Callable[[str, torch.nn.Module, argparse.Namespace], Callable]) -> dict:
    """Trains one method; its record (every rank computes it, rank 0 writes it)."""
    torch.manual_seed(args.seed)
    model = make_model(args.model)
    batches, validation = data(args.model, rank, args.seed)
    step = training(method, model, args)
    curve, sent, seconds = [], [], 0.0
    for index in range(args.steps + 1):
        if index % args.eval_every == 0 or index in (30, args.steps):
            loss, accuracy = evaluate(model, validation)
            curve.append({"step": index, "loss": loss, "accuracy": accuracy, "seconds": seconds})
            # Every rank evaluates the same weights on the same set, so every rank stops here alike.
            if args.stop_at_loss is not None and loss <= args.stop_at_loss:
                break
        if index < args.steps:
            started = time.perf_counter()
            sent.append(step(*next(batches)))
            seconds += time.perf_counter() - started
    dense_bytes = 4 * sum(p.numel() for p in model.parameters())
    at_30 = next((point["loss"] for point in curve if point["step"] == 30), None)
    return {"method": method, "model": args.model, "optimizer": args.optimizer, "seed": args.seed,
            "ratio": args.ratio, "steps": curve[-1]["step"], "curve": curve,
            "final_loss": curve[-1]["loss"], "final_accuracy": curve[-1]["accuracy"], "loss_at_30": at_30,
            "bytes_per_step": float(np.mean(sent)), "dense_bytes_per_step": dense_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", choices=("horovod", "ddp"), required=True)
    parser.add_argument("--model", choices=sorted(LEARNING_RATES), required=True)
    parser.add_argument("--methods", nargs="+", required=True, choices=(*HOROVOD_METHODS, *DDP_METHODS))
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    parser.add_argument("--ratio", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup-steps", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stop-at-loss", type=float, default=None,
                        help="stop at the first evaluation whose validation loss is at most this")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.engine == "horovod":
        hvd.init()
        rank, training = hvd.rank(), horovod_training
    else:
        dist.init_process_group("gloo")
        rank, training = dist.get_rank(), ddp_training
    records = [train(method, args, rank, training) for method in args.methods]
    if rank == 0:
        with open(args.out, "w") as f:
            json.dump(records, f, indent=2)


if __name__ == "__main__":
    main()
