// The selection of csrc/core/select.h as a device stream compaction: the flattened indices of the
// entries beyond the threshold, in index order, and their values. Raw pointers and a stream, no
// framework header; the count stays in device memory. Compiled by nvcc (scripts/check_cuda.sh in
// CI); not yet bound to a framework or run on a GPU.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "../dtype.h"

namespace distq::cuda {

// Writes to indices[0..*count) the i with x[i] != 0 and !(|x[i] - center| < threshold), compared
// in the compute type as on the host, where center_threshold = {center, threshold} is device
// memory (a fit computed on the device). indices must hold n entries; *count is device memory.
// Call once with temp == nullptr to get *temp_bytes, as CUB's device algorithms do.
cudaError_t select(const void* x, int64_t n, DType dtype, const double* center_threshold, int64_t* indices,
                   int64_t* count, void* temp, size_t* temp_bytes, cudaStream_t stream);

// values[j] = x[indices[j]] for j < *count, bit for bit in the tensor's dtype; launched over
// `capacity` entries so the count is never read on the host.
cudaError_t gather_values(const void* x, DType dtype, const int64_t* indices, const int64_t* count, int64_t capacity,
                          void* values, cudaStream_t stream);

}  // namespace distq::cuda
