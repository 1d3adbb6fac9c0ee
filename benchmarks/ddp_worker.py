"""One end-to-end DDP run under ``torchrun``: every method trains the same model for the same steps.

The DDP twin of :mod:`benchmarks.e2e_worker` (same models, data, batches, optimizer and timing),
started by ``python -m benchmarks e2e`` inside its shaped network namespace. The methods are
DDP's own allreduce, PyTorch's fp16 and PowerSGD hooks, and DistQ's hook. Bytes per step are
what this rank put into the hooks' collectives in its last step, counted by wrapping
``torch.distributed``'s collectives (DDP's own allreduce, which runs in C++, is counted as every
gradient at 4 bytes). Rank 0 writes the JSON results to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
from torch.nn.parallel import DistributedDataParallel

from benchmarks.e2e_worker import arguments
from examples.common import digits_split
from examples.torch_models import MODELS, as_tensors
from horovod_distq.torch.ddp import DistQState, distq_hook

METHODS = ("ddp-dense", "ddp-fp16", "ddp-powersgd-1", "ddp-powersgd-2", "ddp-powersgd-4", "ddp-distq")
COUNTED_COLLECTIVES = ("all_reduce", "all_gather_into_tensor", "all_gather")


def register_hook(model: DistributedDataParallel, method: str, args: argparse.Namespace) -> None:
    if method == "ddp-fp16":
        model.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif method.startswith("ddp-powersgd-"):
        # Compressed from the step after the warm-up steps on, so that every timed step is PowerSGD's.
        state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=int(method.rsplit("-", 1)[1]),
                                            start_powerSGD_iter=max(2, args.warmup), random_seed=args.seed)
        model.register_comm_hook(state, powerSGD_hook.powerSGD_hook)
    elif method == "ddp-distq":
        model.register_comm_hook(DistQState(model.module, ratio=args.ratio), distq_hook)


@contextlib.contextmanager
def counted_bytes() -> Iterator[list[int]]:
    """Counts the bytes of the input tensors of the collectives called inside the block."""
    count = [0]
    originals = {name: getattr(dist, name) for name in COUNTED_COLLECTIVES}

    def counting(name: str):
        def collective(*args, **kwargs):
            tensor = args[1] if name.startswith("all_gather") else args[0]
            count[0] += tensor.numel() * tensor.element_size()
            return originals[name](*args, **kwargs)
        return collective

    for name in COUNTED_COLLECTIVES:
        setattr(dist, name, counting(name))
    try:
        yield count
    finally:
        for name, original in originals.items():
            setattr(dist, name, original)


def train(method: str, args: argparse.Namespace, data) -> dict:
    train_x, train_y, _, _ = data
    torch.manual_seed(args.seed)
    net = MODELS[args.model]()
    model = DistributedDataParallel(net)
    register_hook(model, method, args)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    generator = torch.Generator().manual_seed(args.seed + dist.get_rank())
    step_seconds, losses, step_bytes = [], [], 0
    for step in range(args.warmup + args.steps):
        batch = torch.randint(0, len(train_x), (args.batch_size,), generator=generator)
        dist.barrier()  # steps start together, so a step's time is the slowest rank's
        with counted_bytes() as counted:
            start = time.perf_counter()
            optimizer.zero_grad()
            loss = F.cross_entropy(model(train_x[batch]), train_y[batch])
            loss.backward()
            optimizer.step()
            elapsed = time.perf_counter() - start
        if step >= args.warmup:
            step_seconds.append(elapsed)
            losses.append(loss.item())
            step_bytes = counted[0]
    tail = torch.tensor(float(np.mean(losses[-args.loss_window:])))
    dist.all_reduce(tail)
    numels = [p.numel() for p in net.parameters()]
    return {
        "engine": "ddp",
        "method": method,
        "model": args.model,
        "parameters": sum(numels),
        "steps": args.steps,
        "step_ms_median": float(np.median(step_seconds)) * 1e3,
        "final_loss": tail.item() / dist.get_world_size(),
        "bytes_sent_last_step": step_bytes if method != "ddp-dense" else 4 * sum(numels),
    }


def main() -> None:
    parser = arguments(__doc__, METHODS)
    args = parser.parse_args()
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    data = as_tensors(digits_split(args.seed))
    results = [train(method, args, data) for method in args.methods]
    if dist.get_rank() == 0:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
