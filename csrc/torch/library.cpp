// The distq operator library: every schema, in one place. The kernels are registered beside their
// code (sparsify.cpp, control.cpp) with TORCH_LIBRARY_IMPL; the fake (meta) kernels that give
// torch.compile and FakeTensorMode each op's output metadata are in horovod_distq/torch/_library.py.
#include <torch/library.h>

TORCH_LIBRARY(distq, m) {
  // indices, values: the selected entries (k of them, data-dependent; indices int32 below 2^31 entries,
  // else int64; values in the input's dtype). threshold, center: 0-d, float64 for float64 input, else float32.
  m.def("sparsify(Tensor x, float ratio, str distribution, float dof, int sample_size, int stages) -> "
        "(Tensor indices, Tensor values, Tensor threshold, Tensor center)");
  // The same selection in room for `capacity` entries (-1: the core's selection_capacity), and its count
  // (int64, 0-d, on x's device), which may exceed capacity: then the entries were not all written and the
  // caller runs it again with room for that many. On a GPU the count stays on the device until read.
  m.def("sparsify_padded(Tensor x, float ratio, str distribution, float dof, int sample_size, int stages, "
        "int capacity) -> (Tensor indices, Tensor values, Tensor count, Tensor threshold, Tensor center)");
  // The closed loop's state: 4 float64 values on the CPU (csrc/core/control.h).
  m.def("initial_loop_state(float target) -> Tensor");
  m.def("update_loop_state(Tensor state, int selected, int numel, float target) -> Tensor");
}
