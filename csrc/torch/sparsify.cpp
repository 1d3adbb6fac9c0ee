// PyTorch binding of csrc/core/sparsify: dtype mapping, output allocation, error translation.
#include <torch/library.h>
#include <ATen/ATen.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <tuple>

#include "../core/sparsify.h"
#include "dtype.h"

namespace distq::torch_binding {

namespace {

FitSettings settings(double ratio, double dof, int64_t sample_size, int64_t stages) {
  FitSettings params;
  params.ratio = ratio;
  params.dof = dof;
  params.sample_size = sample_size;
  params.stages = stages;
  return params;
}

Sparsified sparsify_on_host(const at::Tensor& x, double ratio, c10::string_view distribution, double dof,
                            int64_t sample_size, int64_t stages) {
  try {
    return sparsify(x.data_ptr(), x.numel(), core_dtype(x), parse_family(std::string(distribution)),
                    settings(ratio, dof, sample_size, stages));
  } catch (const std::invalid_argument& error) {
    TORCH_CHECK_VALUE(false, error.what());
  }
}

// The first min(k, room) selected entries into indices and values of `room` entries each.
void write_selection(const Selection& selection, at::Tensor& indices, at::Tensor& values) {
  if (selection.size() > indices.numel()) return;  // the caller runs it again with room for all
  if (indices.scalar_type() == at::kInt) {
    selection.write_indices(indices.data_ptr<int32_t>());
  } else {
    selection.write_indices(indices.data_ptr<int64_t>());
  }
  selection.write_values(values.data_ptr());
}

at::ScalarType index_type(int64_t n) { return n < kInt32IndexLimit ? at::kInt : at::kLong; }

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sparsify_cpu(const at::Tensor& input, double ratio,
                                                                        c10::string_view distribution, double dof,
                                                                        int64_t sample_size, int64_t stages) {
  TORCH_CHECK(input.device().is_cpu(), "distq.sparsify: the CPU kernel got a tensor on ", input.device());
  const DType dtype = core_dtype(input);
  const at::Tensor x = input.contiguous();
  const Sparsified result = sparsify_on_host(x, ratio, distribution, dof, sample_size, stages);
  const int64_t k = result.selection.size();
  at::Tensor indices = at::empty({k}, x.options().dtype(index_type(x.numel())));
  at::Tensor values = at::empty({k}, x.options());
  write_selection(result.selection, indices, values);
  const auto options = x.options().dtype(compute_type(dtype));
  return {indices, values, at::scalar_tensor(result.fit.threshold, options),
          at::scalar_tensor(result.fit.center, options)};
}

// The same selection in room for `capacity` entries (-1: selection_capacity's), its count beside
// it: the form a device selection takes, whose count stays on the device (sparsify_cuda.cu).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> sparsify_padded_cpu(
    const at::Tensor& input, double ratio, c10::string_view distribution, double dof, int64_t sample_size,
    int64_t stages, int64_t capacity) {
  TORCH_CHECK(input.device().is_cpu(), "distq.sparsify_padded: the CPU kernel got a tensor on ", input.device());
  const DType dtype = core_dtype(input);
  const at::Tensor x = input.contiguous();
  const Sparsified result = sparsify_on_host(x, ratio, distribution, dof, sample_size, stages);
  const int64_t room = capacity >= 0 ? capacity : selection_capacity(x.numel(), ratio, std::max<int64_t>(stages, 1));
  at::Tensor indices = at::zeros({room}, x.options().dtype(index_type(x.numel())));
  at::Tensor values = at::zeros({room}, x.options());
  write_selection(result.selection, indices, values);
  const auto options = x.options().dtype(compute_type(dtype));
  return {indices, values, at::scalar_tensor(result.selection.size(), x.options().dtype(at::kLong)),
          at::scalar_tensor(result.fit.threshold, options), at::scalar_tensor(result.fit.center, options)};
}

}  // namespace

// The schemas are in library.cpp.
TORCH_LIBRARY_IMPL(distq, CPU, m) {
  m.impl("sparsify", &sparsify_cpu);
  m.impl("sparsify_padded", &sparsify_padded_cpu);
}

}  // namespace distq::torch_binding
