#include "moments_cuda.h"

#include <cub/block/block_reduce.cuh>

#include <cmath>

namespace distq::cuda {

namespace {

constexpr int kThreads = 256;

// The sums one thread accumulates; double, as the host pass spills into double.
struct Sums {
  double count, sum, sum2, sum3, sum4, sum_abs, sum_log, nonzero;

  __device__ Sums operator+(const Sums& o) const {
    return {count + o.count, sum + o.sum, sum2 + o.sum2, sum3 + o.sum3, sum4 + o.sum4,
            sum_abs + o.sum_abs, sum_log + o.sum_log, nonzero + o.nonzero};
  }
};

struct Add {
  __device__ Sums operator()(const Sums& a, const Sums& b) const { return a + b; }
};

template <typename T, MomentSet kSet>
__global__ void moments_kernel(const T* x, int64_t n, const double* shift, Moments* out) {
  Sums local{};
  const double s = kSet == MomentSet::kLogAbsolute ? 0.0 : *shift;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double v = static_cast<double>(load(x + i));
    if (!isfinite(v)) continue;  // NaN and Inf are left out, as on the host
    local.count += 1;
    if constexpr (kSet == MomentSet::kLogAbsolute) {
      const double magnitude = fabs(v);
      if (magnitude > 0) {
        local.nonzero += 1;
        local.sum_abs += magnitude;
        local.sum_log += log(magnitude);
      }
    } else if constexpr (kSet == MomentSet::kAbsolute) {
      const double d = v - s;
      local.sum_abs += fabs(d);
      local.sum2 += d * d;
    } else {
      const double d = v - s;
      const double d2 = d * d;
      local.sum += d;
      local.sum2 += d2;
      if constexpr (kSet == MomentSet::kFourth) {
        local.sum3 += d2 * d;
        local.sum4 += d2 * d2;
      }
    }
  }
  using Reduce = cub::BlockReduce<Sums, kThreads>;
  __shared__ typename Reduce::TempStorage storage;
  const Sums block = Reduce(storage).Reduce(local, Add{});
  if (threadIdx.x == 0) {
    atomicAdd(&out->count, block.count);
    atomicAdd(&out->sum, block.sum);
    atomicAdd(&out->sum2, block.sum2);
    atomicAdd(&out->sum3, block.sum3);
    atomicAdd(&out->sum4, block.sum4);
    atomicAdd(&out->sum_abs, block.sum_abs);
    atomicAdd(&out->sum_log, block.sum_log);
    atomicAdd(&out->nonzero, block.nonzero);
  }
}

template <typename T>
void launch(const T* x, int64_t n, const double* shift, MomentSet set, Moments* out, cudaStream_t stream) {
  // Enough blocks to fill any current GPU; each thread then strides over the tensor.
  const int64_t wanted = (n + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(wanted < 4096 ? (wanted > 0 ? wanted : 1) : 4096);
  switch (set) {
    case MomentSet::kSecond: moments_kernel<T, MomentSet::kSecond><<<blocks, kThreads, 0, stream>>>(x, n, shift, out); break;
    case MomentSet::kFourth: moments_kernel<T, MomentSet::kFourth><<<blocks, kThreads, 0, stream>>>(x, n, shift, out); break;
    case MomentSet::kAbsolute: moments_kernel<T, MomentSet::kAbsolute><<<blocks, kThreads, 0, stream>>>(x, n, shift, out); break;
    case MomentSet::kLogAbsolute:
      moments_kernel<T, MomentSet::kLogAbsolute><<<blocks, kThreads, 0, stream>>>(x, n, shift, out);
      break;
  }
}

}  // namespace

cudaError_t compute_moments(const void* x, int64_t n, DType dtype, const double* shift, MomentSet set,
                            Moments* moments, cudaStream_t stream) {
  cudaError_t status = cudaMemsetAsync(moments, 0, sizeof(Moments), stream);
  if (status != cudaSuccess) return status;
  switch (dtype) {
    case DType::kFloat32: launch(static_cast<const float*>(x), n, shift, set, moments, stream); break;
    case DType::kFloat64: launch(static_cast<const double*>(x), n, shift, set, moments, stream); break;
    case DType::kFloat16: launch(static_cast<const Half*>(x), n, shift, set, moments, stream); break;
    case DType::kBFloat16: launch(static_cast<const BFloat16*>(x), n, shift, set, moments, stream); break;
  }
  return cudaGetLastError();
}

}  // namespace distq::cuda
