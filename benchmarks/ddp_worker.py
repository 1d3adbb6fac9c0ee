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
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
from torch.nn.parallel import DistributedDataParallel

from benchmarks.e2e_worker import arguments, record, run_methods, timed_steps
from examples.torch_models import MODELS
from horovod_distq.torch.ddp import DistQState, distq_hook

METHODS = ("ddp-dense", "ddp-fp16", "ddp-powersgd-1", "ddp-powersgd-2", "ddp-powersgd-4", "ddp-distq")
COUNTED_COLLECTIVES = ("all_reduce", "all_gather_single", "all_gather_into_tensor", "all_gather")


def register_hook(model: DistributedDataParallel, method: str, args: argparse.Namespace) -> None:
    if method == "ddp-fp16":
        model.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif method.startswith("ddp-powersgd-"):
        # Compressed from the step after the warm-up steps on, so that every timed step is PowerSGD's.
        state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=int(method.rsplit("-", 1)[1]),
                                            start_powerSGD_iter=max(2, args.warmup), random_seed=args.seed)
        model.register_comm_hook(state, waited_for(powerSGD_hook.powerSGD_hook))
    elif method == "ddp-distq":  # without the sparsity warm-up: the timed steps are at the target ratio
        model.register_comm_hook(DistQState(model.module, ratio=args.ratio, warmup=None), distq_hook)


def waited_for(hook):
    """``hook``, waited for inside the hook: each bucket's collectives end before the next bucket's
    start. PowerSGD's hook starts collectives from its futures' callbacks, which under Gloo run on
    Gloo's threads in an order the ranks do not share: run as it is, it hung (both ranks idle in
    backward(), seen with py-spy) or aborted a worker in some launches of this suite."""

    def run(state, bucket):  # no annotations: DDP accepts only the classes themselves, not strings
        done = torch.futures.Future()
        done.set_result(hook(state, bucket).wait())
        return done

    return run


@contextlib.contextmanager
def counted_bytes() -> Iterator[list[int]]:
    """Counts the bytes of the input tensors of the collectives called inside the block."""
    count = [0]
    originals = {name: getattr(dist, name) for name in COUNTED_COLLECTIVES if hasattr(dist, name)}

    def counting(name: str):
        def collective(*args, **kwargs):
            tensor = args[1] if name.startswith("all_gather") else args[0]
            count[0] += tensor.numel() * tensor.element_size()
            return originals[name](*args, **kwargs)
        return collective

    for name in originals:
        setattr(dist, name, counting(name))
    try:
        yield count
    finally:
        for name, original in originals.items():
            setattr(dist, name, original)


def train(method: str, args: argparse.Namespace, data) -> dict:
    torch.manual_seed(args.seed)
    net = MODELS[args.model]()
    model = DistributedDataParallel(net)
    register_hook(model, method, args)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        counted[0] = 0  # what is left after the last step is that step's
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    with counted_bytes() as counted:
        timed = timed_steps(args, data, dist.get_rank(), dist.barrier, step)
    tail = torch.tensor(float(np.mean(timed.losses[-args.loss_window:])))
    dist.all_reduce(tail)
    numels = [p.numel() for p in net.parameters()]
    # DDP's own allreduce runs in C++, past the wrappers: every gradient at 4 bytes.
    step_bytes = 4 * sum(numels) if method == "ddp-dense" else counted[0]
    return record("ddp", method, args, numels, timed, tail.item() / dist.get_world_size(), step_bytes)


def main() -> None:
    args = arguments(__doc__, METHODS).parse_args()
    dist.init_process_group("gloo")
    run_methods(args, train, dist.get_rank(), dist.barrier)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
