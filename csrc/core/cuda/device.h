// The device code's two backends, behind one small interface: CUDA when nvcc compiles it, and
// Thrust's OpenMP system on the host (-DTHRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP with g++),
// the build the tests run on a machine without a GPU. Every kernel of csrc/core/cuda/ is a Thrust
// algorithm or a CUB device algorithm called through Device, so both builds run the same source.
//
// Nothing here reads device memory on the host: a reduction or a selection leaves its result (a
// sum, a count) in device memory, where the next kernel reads it. Thrust's own reduce and copy_if
// return their result to the host, a synchronising copy on CUDA; that is why the CUDA build calls
// CUB's reduce and select, which write to a device pointer, and the OpenMP build Thrust's (on the
// host, device memory is host memory).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include <thrust/execution_policy.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#if defined(__CUDACC__)
#include <cub/device/device_reduce.cuh>
#include <cub/device/device_select.cuh>
#include <cuda_runtime.h>
#include <thrust/system/cuda/execution_policy.h>
#else
#include <thrust/copy.h>
#include <thrust/reduce.h>
#include <thrust/system/omp/execution_policy.h>
#endif

namespace distq::cuda {

#if defined(__CUDACC__)
using Stream = cudaStream_t;
#else
using Stream = void*;  // unused: the OpenMP build runs each call to completion
#endif

// Device memory from the caller (a framework's caching allocator). It must be stream-ordered, as
// torch's CUDA caching allocator is: memory freed after enqueuing work that reads it is reused
// only by work enqueued later on the same stream, so scratch can be freed before the kernels ran.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* pointer, size_t bytes) = 0;
};

// Thrust's allocator concept over an Allocator: its algorithms' temporary storage comes from it too.
struct ThrustAllocator {
  using value_type = char;
  Allocator* allocator;
  char* allocate(std::ptrdiff_t bytes) { return static_cast<char*>(allocator->allocate(static_cast<size_t>(bytes))); }
  void deallocate(char* pointer, size_t bytes) { allocator->deallocate(pointer, bytes); }
};

// An allocator and a stream: where kernels run and where their scratch comes from.
class Device {
 public:
  Device(Allocator& allocator, Stream stream) : allocator_(allocator), thrust_allocator_{&allocator}, stream_(stream) {}

  Allocator& allocator() const { return allocator_; }

  auto policy() const {
#if defined(__CUDACC__)
    return thrust::cuda::par_nosync(thrust_allocator_).on(stream_);
#else
    return thrust::omp::par(thrust_allocator_);
#endif
  }

  // Runs fn(0) once on the device: the scalar steps between passes (fits, stage decisions).
  template <typename Fn>
  void run_once(const Fn& fn) const {
    thrust::for_each_n(policy(), thrust::counting_iterator<int>(0), 1, fn);
  }

  // Runs fn(i) for every i in [0, n).
  template <typename Fn>
  void for_each(int64_t n, const Fn& fn) const {
    if (n > 0) thrust::for_each_n(policy(), thrust::counting_iterator<int64_t>(0), n, fn);
  }

  // *out = init op first[0] op ... op first[n - 1], left in device memory.
  template <typename In, typename T, typename Op>
  void reduce_into(In first, int64_t n, T* out, T init, Op op) const;

  // Writes the items of first[0..n) that pred keeps to out[0..), in order, and their number to
  // *count (device memory).
  template <typename In, typename Out, typename Pred>
  void select_into(In first, int64_t n, Out out, int64_t* count, Pred pred) const;

 private:
  Allocator& allocator_;
  mutable ThrustAllocator thrust_allocator_;
  Stream stream_;
};

// n entries of T in device memory, given back to the allocator when it goes out of scope.
template <typename T>
class Scratch {
 public:
  Scratch(const Device& device, int64_t n)
      : allocator_(device.allocator()), bytes_(static_cast<size_t>(n > 0 ? n : 1) * sizeof(T)),
        data_(static_cast<T*>(allocator_.allocate(bytes_))) {}
  ~Scratch() { allocator_.deallocate(data_, bytes_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  T* data() const { return data_; }

 private:
  Allocator& allocator_;
  size_t bytes_;
  T* data_;
};

#if defined(__CUDACC__)
inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string("distq: ") + what + ": " + cudaGetErrorString(status));
}

template <typename In, typename T, typename Op>
void Device::reduce_into(In first, int64_t n, T* out, T init, Op op) const {
  size_t bytes = 0;
  check(cub::DeviceReduce::Reduce(nullptr, bytes, first, out, n, op, init, stream_), "reduce");
  Scratch<unsigned char> temp(*this, static_cast<int64_t>(bytes));
  check(cub::DeviceReduce::Reduce(temp.data(), bytes, first, out, n, op, init, stream_), "reduce");
}

template <typename In, typename Out, typename Pred>
void Device::select_into(In first, int64_t n, Out out, int64_t* count, Pred pred) const {
  size_t bytes = 0;
  check(cub::DeviceSelect::If(nullptr, bytes, first, out, count, n, pred, stream_), "select");
  Scratch<unsigned char> temp(*this, static_cast<int64_t>(bytes));
  check(cub::DeviceSelect::If(temp.data(), bytes, first, out, count, n, pred, stream_), "select");
}
#else
template <typename In, typename T, typename Op>
void Device::reduce_into(In first, int64_t n, T* out, T init, Op op) const {
  *out = thrust::reduce(policy(), first, first + n, init, op);
}

template <typename In, typename Out, typename Pred>
void Device::select_into(In first, int64_t n, Out out, int64_t* count, Pred pred) const {
  *count = thrust::copy_if(policy(), first, first + n, out, pred) - out;
}
#endif

}  // namespace distq::cuda
