// A C interface to the CPU core and to the device code built for Thrust's OpenMP backend, side by
// side in one library, so that tests/device/test_device_kernels.py compares the two on the same
// input (ctypes, no framework). Built by tests/device/library.py.
#include <cstdint>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <string>

#include "../../csrc/core/control.h"
#include "../../csrc/core/cuda/control_cuda.h"
#include "../../csrc/core/cuda/sparsify_cuda.h"
#include "../../csrc/core/sparsify.h"

namespace {

using distq::DType;

// Host memory standing in for device memory. It counts what is outstanding, so a test sees scratch
// that was never given back, and fills each block with a pattern, so a kernel that reads scratch it
// never wrote gives wrong answers instead of lucky zeros.
class CountingAllocator : public distq::cuda::Allocator {
 public:
  void* allocate(size_t bytes) override {
    void* pointer = ::operator new(bytes);
    std::memset(pointer, 0xA5, bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    ++outstanding_;
    ++total_;
    return pointer;
  }
  void deallocate(void* pointer, size_t) override {
    ::operator delete(pointer);
    std::lock_guard<std::mutex> lock(mutex_);
    --outstanding_;
  }
  int64_t outstanding() const { return outstanding_; }
  int64_t total() const { return total_; }

 private:
  std::mutex mutex_;
  int64_t outstanding_ = 0;
  int64_t total_ = 0;
};

CountingAllocator& allocator() {
  static CountingAllocator instance;
  return instance;
}

int fail(const std::exception& error, char* message, int64_t message_size) {
  if (message_size > 0) {
    std::strncpy(message, error.what(), static_cast<size_t>(message_size - 1));
    message[message_size - 1] = '\0';
  }
  return 1;
}

template <typename Index>
void write_cpu(const distq::Selection& selection, void* indices, void* values, int64_t capacity) {
  if (selection.size() > capacity) return;
  selection.write_indices(static_cast<Index*>(indices));
  selection.write_values(values);
}

}  // namespace

extern "C" {

// Sparsifies x[0..n) (dtype: 0 float32, 1 float64, 2 float16, 3 bfloat16) with the CPU core
// (device 0) or the device code (device 1). The ratio is fit_ratio(loop_state) when loop_state is
// given. Writes up to capacity indices (int32 below 2^31 entries, else int64) and values, the count
// (which may exceed capacity: then nothing, or only capacity entries, was written) and
// {center, threshold}. Returns 0, or 1 with the error's message.
int distq_test_sparsify(int device, const void* x, int64_t n, int dtype, const char* family, double ratio,
                        double dof, int64_t sample_size, int64_t stages, const double* loop_state, int64_t capacity,
                        void* indices, void* values, int64_t* count, double* center_threshold, char* message,
                        int64_t message_size) {
  try {
    distq::FitSettings params;
    params.ratio = ratio;
    params.dof = dof;
    params.sample_size = sample_size;
    params.stages = stages;
    const auto type = static_cast<DType>(dtype);
    const distq::Family parsed = distq::parse_family(family);
    const bool wide = n >= distq::kInt32IndexLimit;
    if (device == 0) {
      if (loop_state != nullptr) params.ratio = distq::fit_ratio(loop_state);
      const distq::Sparsified result = distq::sparsify(x, n, type, parsed, params);
      *count = result.selection.size();
      if (wide) {
        write_cpu<int64_t>(result.selection, indices, values, capacity);
      } else {
        write_cpu<int32_t>(result.selection, indices, values, capacity);
      }
      center_threshold[0] = result.fit.center;
      center_threshold[1] = result.fit.threshold;
    } else {
      const distq::cuda::Device on(allocator(), nullptr);
      distq::cuda::SparsifyOutput out;
      out.selection = distq::cuda::Entries{indices, values, wide, capacity, count};
      out.center_threshold = center_threshold;
      distq::cuda::sparsify(on, x, n, type, parsed, params, loop_state, out);
    }
    return 0;
  } catch (const std::exception& error) {
    return fail(error, message, message_size);
  }
}

// One closed-loop step on the device code, the count read from device memory.
void distq_test_update_loop(double* state, const int64_t* selected, int64_t numel, double target) {
  const distq::cuda::Device on(allocator(), nullptr);
  distq::cuda::update_loop(on, state, selected, numel, target);
}

// How many scratch blocks the device code holds now, and has ever taken.
int64_t distq_test_outstanding_allocations() { return allocator().outstanding(); }
int64_t distq_test_total_allocations() { return allocator().total(); }

}  // extern "C"
