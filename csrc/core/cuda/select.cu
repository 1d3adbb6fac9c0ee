#include "select_cuda.h"

#include <cub/device/device_select.cuh>
#include <thrust/iterator/counting_iterator.h>

namespace distq::cuda {

namespace {

constexpr int kThreads = 256;

// The host selection's rule (select.cpp's keep): nonzero and not closer to the centre than the
// threshold, in the compute type, so NaN and Inf are always kept.
template <typename T>
struct Beyond {
  const T* x;
  const double* center_threshold;

  __device__ bool operator()(int64_t i) const {
    using C = typename Compute<T>::type;
    const C v = load(x + i);
    const C d = v - static_cast<C>(center_threshold[0]);
    return v != C(0) && !((d < C(0) ? -d : d) < static_cast<C>(center_threshold[1]));
  }
};

template <typename T>
cudaError_t select_as(const T* x, int64_t n, const double* center_threshold, int64_t* indices, int64_t* count,
                      void* temp, size_t* temp_bytes, cudaStream_t stream) {
  return cub::DeviceSelect::If(temp, *temp_bytes, thrust::counting_iterator<int64_t>(0), indices, count, n,
                               Beyond<T>{x, center_threshold}, stream);
}

template <typename T>
__global__ void gather_kernel(const T* x, const int64_t* indices, const int64_t* count, int64_t capacity, T* values) {
  const int64_t k = *count;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < k && j < capacity;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    values[j] = x[indices[j]];
  }
}

template <typename T>
cudaError_t gather_as(const T* x, const int64_t* indices, const int64_t* count, int64_t capacity, T* values,
                      cudaStream_t stream) {
  const int64_t wanted = (capacity + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(wanted < 4096 ? (wanted > 0 ? wanted : 1) : 4096);
  gather_kernel<<<blocks, kThreads, 0, stream>>>(x, indices, count, capacity, values);
  return cudaGetLastError();
}

}  // namespace

cudaError_t select(const void* x, int64_t n, DType dtype, const double* center_threshold, int64_t* indices,
                   int64_t* count, void* temp, size_t* temp_bytes, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32:
      return select_as(static_cast<const float*>(x), n, center_threshold, indices, count, temp, temp_bytes, stream);
    case DType::kFloat64:
      return select_as(static_cast<const double*>(x), n, center_threshold, indices, count, temp, temp_bytes, stream);
    case DType::kFloat16:
      return select_as(static_cast<const Half*>(x), n, center_threshold, indices, count, temp, temp_bytes, stream);
    case DType::kBFloat16:
      return select_as(static_cast<const BFloat16*>(x), n, center_threshold, indices, count, temp, temp_bytes,
                       stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t gather_values(const void* x, DType dtype, const int64_t* indices, const int64_t* count, int64_t capacity,
                          void* values, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32:
      return gather_as(static_cast<const float*>(x), indices, count, capacity, static_cast<float*>(values), stream);
    case DType::kFloat64:
      return gather_as(static_cast<const double*>(x), indices, count, capacity, static_cast<double*>(values), stream);
    case DType::kFloat16:
      return gather_as(static_cast<const Half*>(x), indices, count, capacity, static_cast<Half*>(values), stream);
    case DType::kBFloat16:
      return gather_as(static_cast<const BFloat16*>(x), indices, count, capacity, static_cast<BFloat16*>(values),
                       stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace distq::cuda
