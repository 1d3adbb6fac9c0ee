// The strided sample of csrc/core/sample.h on the device, and the quartiles the Laplace and Cauchy
// fits read from it, written into a device Statistics. Compiled by nvcc (scripts/check_cuda.sh in
// CI); not yet bound to a framework or run on a GPU.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "../dtype.h"
#include "../fit.h"

namespace distq::cuda {

// Sorts the values x[floor(i * n / m)], i < m = min(n, sample_size), non-finite ones last, and
// sets statistics->median (and, with quartiles, lower_quartile and upper_quartile) by NumPy's
// linear rule over the finite ones (NaN if none); with median_as_shift, statistics->shift = the
// median (0 if none), as the Laplace fit needs before its moments pass. sample, sorted and count
// are device scratch of m, m and 1 entries. Call once with temp == nullptr for *temp_bytes.
cudaError_t sample_quartiles(const void* x, int64_t n, DType dtype, int64_t sample_size, bool quartiles,
                             bool median_as_shift, double* sample, double* sorted, int64_t* count,
                             Statistics* statistics, void* temp, size_t* temp_bytes, cudaStream_t stream);

}  // namespace distq::cuda
