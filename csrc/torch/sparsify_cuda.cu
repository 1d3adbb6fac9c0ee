// PyTorch's CUDA kernels of distq.sparsify and distq.sparsify_padded: the device code of
// csrc/core/cuda/ on torch's current stream, its scratch from torch's caching allocator. Built
// only where setup.py finds nvcc and a CUDA build of torch.
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>

#include <stdexcept>
#include <string>
#include <tuple>

#include "../core/cuda/sparsify_cuda.h"
#include "../core/sparsify.h"
#include "dtype.h"

namespace distq::torch_binding {

namespace {

// Stream-ordered, as the device code needs: a block freed here is reused only by work enqueued
// later on the stream it was taken on.
class CachingAllocator : public cuda::Allocator {
 public:
  void* allocate(size_t bytes) override { return c10::cuda::CUDACachingAllocator::raw_alloc(bytes); }
  void deallocate(void* pointer, size_t) override { c10::cuda::CUDACachingAllocator::raw_delete(pointer); }
};

using Padded = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

Padded sparsify_padded_cuda(const at::Tensor& input, double ratio, c10::string_view distribution, double dof,
                            int64_t sample_size, int64_t stages, int64_t capacity) {
  TORCH_CHECK(input.is_cuda(), "distq.sparsify_padded: the CUDA kernel got a tensor on ", input.device());
  const c10::cuda::CUDAGuard guard(input.device());
  const DType dtype = core_dtype(input);
  const at::Tensor x = input.contiguous();
  const int64_t n = x.numel();
  FitSettings params;
  params.ratio = ratio;
  params.dof = dof;
  params.sample_size = sample_size;
  params.stages = stages;
  try {
    validate(params);
    const Family family = parse_family(std::string(distribution));
    const int64_t room = capacity >= 0 ? capacity : selection_capacity(n, ratio, stages);
    const bool wide = n >= kInt32IndexLimit;
    at::Tensor indices = at::empty({room}, x.options().dtype(wide ? at::kLong : at::kInt));
    at::Tensor values = at::empty({room}, x.options());
    at::Tensor count = at::empty({}, x.options().dtype(at::kLong));
    at::Tensor center_threshold = at::empty({2}, x.options().dtype(at::kDouble));
    CachingAllocator allocator;
    const cuda::Device device(allocator, at::cuda::getCurrentCUDAStream());
    cuda::SparsifyOutput out;
    out.selection = cuda::Entries{indices.data_ptr(), values.data_ptr(), wide, room, count.data_ptr<int64_t>()};
    out.center_threshold = center_threshold.data_ptr<double>();
    cuda::sparsify(device, x.data_ptr(), n, dtype, family, params, nullptr, out);
    const at::Tensor reported = center_threshold.to(compute_type(dtype));
    return {indices, values, count, reported[1], reported[0]};
  } catch (const std::invalid_argument& error) {
    TORCH_CHECK_VALUE(false, error.what());
  } catch (const std::runtime_error& error) {
    TORCH_CHECK(false, error.what());
  }
}

// The exact-size selection reads its count: one device-to-host copy per call. The compressor takes
// sparsify_padded instead and reads every gradient's count of a step at once.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sparsify_cuda(const at::Tensor& input, double ratio,
                                                                         c10::string_view distribution, double dof,
                                                                         int64_t sample_size, int64_t stages) {
  auto [indices, values, count, threshold, center] =
      sparsify_padded_cuda(input, ratio, distribution, dof, sample_size, stages, -1);
  const int64_t k = count.item<int64_t>();
  if (k > indices.numel()) {
    std::tie(indices, values, count, threshold, center) =
        sparsify_padded_cuda(input, ratio, distribution, dof, sample_size, stages, k);
  }
  return {indices.narrow(0, 0, k), values.narrow(0, 0, k), threshold, center};
}

}  // namespace

// The schemas are in library.cpp.
TORCH_LIBRARY_IMPL(distq, CUDA, m) {
  m.impl("sparsify", &sparsify_cuda);
  m.impl("sparsify_padded", &sparsify_padded_cuda);
}

}  // namespace distq::torch_binding
