"""Loads the compiled custom-op library, with a readable error when it does not fit this torch.

It also registers each ``distq::`` op's fake kernel: the output metadata (shape, dtype, device)
without the data, which ``torch.compile``, ``FakeTensorMode`` and ``torch.library.opcheck`` use.
The schemas are in ``csrc/torch/library.cpp``.
"""

import torch

from horovod_distq import wire
from horovod_distq._build import compiled_library

torch.ops.load_library(compiled_library("_torch_ops", "torch", torch.__version__))

# As csrc/core/control.h (kLoopFields): the closed loop's state is this many float64 values.
_LOOP_FIELDS = 4
_SPARSIFY_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _selection_dtypes(x: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    """The index and compute dtypes of a selection of ``x``, after the kernels' dtype check."""
    torch._check(
        x.dtype in _SPARSIFY_DTYPES,
        lambda: f"distq.sparsify: expected a float32, float64, float16 or bfloat16 tensor, got {x.dtype}",
    )
    index_dtype = torch.int32 if x.numel() < wire.INT32_INDEX_LIMIT else torch.int64
    return index_dtype, torch.float64 if x.dtype == torch.float64 else torch.float32


@torch.library.register_fake("distq::sparsify")
def _sparsify_fake(
    x: torch.Tensor, ratio: float, distribution: str, dof: float, sample_size: int, stages: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    index_dtype, compute_dtype = _selection_dtypes(x)
    # How many entries pass the threshold is known only once the data is: an unbacked size in [0, numel].
    k = torch.library.get_ctx().new_dynamic_size()
    torch._check(k <= x.numel())
    return (x.new_empty((k,), dtype=index_dtype), x.new_empty((k,)), x.new_empty((), dtype=compute_dtype),
            x.new_empty((), dtype=compute_dtype))


@torch.library.register_fake("distq::sparsify_padded")
def _sparsify_padded_fake(
    x: torch.Tensor, ratio: float, distribution: str, dof: float, sample_size: int, stages: int, capacity: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    index_dtype, compute_dtype = _selection_dtypes(x)
    # The room given, or the core's selection_capacity (csrc/core/sparsify.h), which only the kernel computes.
    room = capacity if capacity >= 0 else torch.library.get_ctx().new_dynamic_size()
    return (x.new_empty((room,), dtype=index_dtype), x.new_empty((room,)), x.new_empty((), dtype=torch.int64),
            x.new_empty((), dtype=compute_dtype), x.new_empty((), dtype=compute_dtype))


@torch.library.register_fake("distq::initial_loop_state")
def _initial_loop_state_fake(target: float) -> torch.Tensor:
    return torch.empty(_LOOP_FIELDS, dtype=torch.float64, device="cpu")


@torch.library.register_fake("distq::update_loop_state")
def _update_loop_state_fake(state: torch.Tensor, selected: int, numel: int, target: float) -> torch.Tensor:
    torch._check(
        state.device.type == "cpu" and state.dtype == torch.float64 and state.numel() == _LOOP_FIELDS,
        lambda: "distq.update_loop_state: the state must be 4 float64 values on the CPU",
    )
    # The kernel returns a contiguous copy of the state, in the state's shape.
    return torch.empty_like(state, memory_format=torch.contiguous_format)
