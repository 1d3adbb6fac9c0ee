// The fused statistics pass of csrc/core/moments.h as a device reduction. Raw pointers and a
// stream, no framework header. Compiled by nvcc (scripts/check_cuda.sh compiles it in CI); not yet
// bound to a framework or run on a GPU.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../dtype.h"
#include "../moments.h"

namespace distq::cuda {

// Sums of d = x - *shift over the finite elements of x[0..n), the same sums compute_moments takes
// on the host for `set`, written to *moments (device memory, zeroed here first). shift is a device
// pointer: a shift computed on the device is never copied to the host. Everything is enqueued on
// `stream`; nothing waits for it.
cudaError_t compute_moments(const void* x, int64_t n, DType dtype, const double* shift, MomentSet set,
                            Moments* moments, cudaStream_t stream);

}  // namespace distq::cuda
