// PyTorch binding of csrc/core/sparsify: dtype mapping, output allocation, error translation.
#include <torch/library.h>
#include <ATen/ATen.h>

#include <stdexcept>
#include <string>
#include <tuple>

#include "../core/sparsify.h"

namespace distq::torch_binding {

namespace {

DType core_dtype(const at::Tensor& x) {
  switch (x.scalar_type()) {
    case at::kFloat: return DType::kFloat32;
    case at::kDouble: return DType::kFloat64;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    default:
      TORCH_CHECK_TYPE(false, "distq.sparsify: expected a float32, float64, float16 or bfloat16 tensor, got ",
                       x.scalar_type());
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sparsify_cpu(const at::Tensor& input, double ratio,
                                                                        c10::string_view distribution, double dof,
                                                                        int64_t sample_size, int64_t stages) {
  TORCH_CHECK(input.device().is_cpu(), "distq.sparsify: the CPU kernel got a tensor on ", input.device());
  const DType dtype = core_dtype(input);
  const at::Tensor x = input.contiguous();
  const int64_t n = x.numel();
  FitSettings params;
  params.ratio = ratio;
  params.dof = dof;
  params.sample_size = sample_size;
  params.stages = stages;
  try {
    const Sparsified result = sparsify(x.data_ptr(), n, dtype, parse_family(std::string(distribution)), params);
    const int64_t k = result.selection.size();
    const auto index_type = n < kInt32IndexLimit ? at::kInt : at::kLong;
    at::Tensor indices = at::empty({k}, x.options().dtype(index_type));
    at::Tensor values = at::empty({k}, x.options());
    if (index_type == at::kInt) {
      result.selection.write_indices(indices.data_ptr<int32_t>());
    } else {
      result.selection.write_indices(indices.data_ptr<int64_t>());
    }
    result.selection.write_values(values.data_ptr());
    const auto compute_type = dtype == DType::kFloat64 ? at::kDouble : at::kFloat;
    at::Tensor threshold = at::scalar_tensor(result.fit.threshold, x.options().dtype(compute_type));
    at::Tensor center = at::scalar_tensor(result.fit.center, x.options().dtype(compute_type));
    return {indices, values, threshold, center};
  } catch (const std::invalid_argument& error) {
    TORCH_CHECK_VALUE(false, error.what());
  }
}

}  // namespace

// The schema is in library.cpp.
TORCH_LIBRARY_IMPL(distq, CPU, m) { m.impl("sparsify", &sparsify_cpu); }

}  // namespace distq::torch_binding
