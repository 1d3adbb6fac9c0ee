// The closed-loop step of csrc/core/control.h on the device, reading the selected count where the
// selection left it, so the loop never copies a count to the host. Compiled by nvcc
// (scripts/check_cuda.sh in CI); not yet bound to a framework or run on a GPU.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace distq::cuda {

// state: 4 doubles (csrc/core/control.h) in device memory; count: the device count that
// select() wrote. One thread's work, enqueued on `stream`.
cudaError_t update_loop(double* state, const int64_t* count, int64_t numel, double target, cudaStream_t stream);

// *fit_ratio = exp(state[0]): the ratio the next fit runs at, left in device memory.
cudaError_t fit_ratio(const double* state, double* fit_ratio, cudaStream_t stream);

}  // namespace distq::cuda
