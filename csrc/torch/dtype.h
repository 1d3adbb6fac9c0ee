// The torch dtypes the core reads, mapped onto its DType; shared by the CPU and CUDA kernels.
#pragma once

#include <ATen/ATen.h>

#include "../core/dtype.h"

namespace distq::torch_binding {

inline DType core_dtype(const at::Tensor& x) {
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

// The dtype thresholds and centres are reported in: the one the selection compares in.
inline at::ScalarType compute_type(DType dtype) { return dtype == DType::kFloat64 ? at::kDouble : at::kFloat; }

}  // namespace distq::torch_binding
