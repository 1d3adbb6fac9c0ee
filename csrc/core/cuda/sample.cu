#include "sample_cuda.h"

#include <cub/device/device_radix_sort.cuh>

namespace distq::cuda {

namespace {

constexpr int kThreads = 256;

// Non-finite values become +Inf, so they sort last and the finite ones are the first *count.
template <typename T>
__global__ void gather_sample(const T* x, int64_t n, int64_t m, double* sample, int64_t* count) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= m) return;
  // The host's index, i * n / m in integers (i < m <= the sample size, so no overflow).
  const double v = static_cast<double>(load(x + i * n / m));
  const bool finite = is_finite(v);
  sample[i] = finite ? v : INFINITY;
  if (finite) atomicAdd(reinterpret_cast<unsigned long long*>(count), 1ull);
}

// NumPy's "linear" quantile of sorted[0..count).
__device__ double linear_quantile(const double* sorted, int64_t count, double q) {
  if (count == 0) return NAN;
  const double position = q * static_cast<double>(count - 1);
  const int64_t below = static_cast<int64_t>(floor(position));
  const int64_t above = below + 1 < count ? below + 1 : below;
  return sorted[below] + (sorted[above] - sorted[below]) * (position - static_cast<double>(below));
}

__global__ void quartiles_kernel(const double* sorted, const int64_t* count, bool quartiles, bool median_as_shift,
                                 Statistics* statistics) {
  statistics->median = linear_quantile(sorted, *count, 0.5);
  if (quartiles) {
    statistics->lower_quartile = linear_quantile(sorted, *count, 0.25);
    statistics->upper_quartile = linear_quantile(sorted, *count, 0.75);
  }
  if (median_as_shift) statistics->shift = *count > 0 ? statistics->median : 0.0;
}

template <typename T>
void launch_gather(const T* x, int64_t n, int64_t m, double* sample, int64_t* count, cudaStream_t stream) {
  gather_sample<<<static_cast<unsigned>((m + kThreads - 1) / kThreads), kThreads, 0, stream>>>(x, n, m, sample, count);
}

}  // namespace

cudaError_t sample_quartiles(const void* x, int64_t n, DType dtype, int64_t sample_size, bool quartiles,
                             bool median_as_shift, double* sample, double* sorted, int64_t* count,
                             Statistics* statistics, void* temp, size_t* temp_bytes, cudaStream_t stream) {
  const int64_t m = n < sample_size ? n : sample_size;
  if (temp == nullptr) {
    return cub::DeviceRadixSort::SortKeys(temp, *temp_bytes, sample, sorted, static_cast<int>(m), 0,
                                          static_cast<int>(sizeof(double) * 8), stream);
  }
  cudaError_t status = cudaMemsetAsync(count, 0, sizeof(int64_t), stream);
  if (status != cudaSuccess) return status;
  if (m > 0) {
    switch (dtype) {
      case DType::kFloat32: launch_gather(static_cast<const float*>(x), n, m, sample, count, stream); break;
      case DType::kFloat64: launch_gather(static_cast<const double*>(x), n, m, sample, count, stream); break;
      case DType::kFloat16: launch_gather(static_cast<const Half*>(x), n, m, sample, count, stream); break;
      case DType::kBFloat16: launch_gather(static_cast<const BFloat16*>(x), n, m, sample, count, stream); break;
    }
    status = cub::DeviceRadixSort::SortKeys(temp, *temp_bytes, sample, sorted, static_cast<int>(m), 0,
                                            static_cast<int>(sizeof(double) * 8), stream);
    if (status != cudaSuccess) return status;
  }
  quartiles_kernel<<<1, 1, 0, stream>>>(sorted, count, quartiles, median_as_shift, statistics);
  return cudaGetLastError();
}

}  // namespace distq::cuda
