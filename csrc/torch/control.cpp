// PyTorch binding of csrc/core/control.h: one closed-loop step on a tensor's 4-double state.
#include <torch/library.h>
#include <ATen/ATen.h>

#include "../core/control.h"

namespace distq::torch_binding {

namespace {

at::Tensor initial_loop(double target) {
  at::Tensor state = at::empty({kLoopFields}, at::kDouble);
  make_loop_state(target, state.data_ptr<double>());
  return state;
}

at::Tensor update_loop(const at::Tensor& state, int64_t selected, int64_t numel, double target) {
  TORCH_CHECK(state.device().is_cpu() && state.scalar_type() == at::kDouble && state.numel() == kLoopFields,
              "distq.update_loop: the state must be 4 float64 values on the CPU");
  at::Tensor updated = state.contiguous().clone();
  update_loop_state(updated.data_ptr<double>(), selected, numel, target);
  return updated;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(distq, m) {
  m.def("initial_loop(float target) -> Tensor", &initial_loop);
  m.def("update_loop(Tensor state, int selected, int numel, float target) -> Tensor", &update_loop);
}

}  // namespace distq::torch_binding
