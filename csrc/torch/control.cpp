// PyTorch binding of csrc/core/control.h: one closed-loop step on a tensor's 4-double state.
#include <torch/library.h>
#include <ATen/ATen.h>

#include "../core/control.h"

namespace distq::torch_binding {

namespace {

at::Tensor initial_loop_state_cpu(double target) {
  at::Tensor state = at::empty({kLoopFields}, at::kDouble);
  initial_loop_state(target, state.data_ptr<double>());
  return state;
}

at::Tensor update_loop_state_cpu(const at::Tensor& state, int64_t selected, int64_t numel, double target) {
  TORCH_CHECK(state.device().is_cpu() && state.scalar_type() == at::kDouble && state.numel() == kLoopFields,
              "distq.update_loop_state: the state must be 4 float64 values on the CPU");
  at::Tensor updated = state.contiguous().clone();
  update_loop_state(updated.data_ptr<double>(), selected, numel, target);
  return updated;
}

}  // namespace

// The schemas are in library.cpp.
TORCH_LIBRARY_IMPL(distq, CPU, m) { m.impl("update_loop_state", &update_loop_state_cpu); }

// initial_loop_state has no tensor argument, so its arguments carry no dispatch key: a CPU kernel would never
// be chosen (the dispatcher sees the Undefined key), and a BackendSelect kernel would need a device
// argument the schema does not have. CompositeExplicitAutograd is the alias that serves the Undefined
// key (and every backend) with this one kernel, which always makes its state on the CPU, as the loop's
// state lives there. Unlike CompositeImplicitAutograd (what a plain m.def(name, fn) registers) it is
// not traced through: FakeTensorMode and torch.compile use the fake kernel in _library.py.
TORCH_LIBRARY_IMPL(distq, CompositeExplicitAutograd, m) { m.impl("initial_loop_state", &initial_loop_state_cpu); }

}  // namespace distq::torch_binding
