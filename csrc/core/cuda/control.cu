#include "control_cuda.h"

#include "../control.h"

namespace distq::cuda {

namespace {

__global__ void update_loop_kernel(double* state, const int64_t* count, int64_t numel, double target) {
  update_loop_state(state, *count, numel, target);
}

__global__ void fit_ratio_kernel(const double* state, double* ratio) { *ratio = distq::fit_ratio(state); }

}  // namespace

cudaError_t update_loop(double* state, const int64_t* count, int64_t numel, double target, cudaStream_t stream) {
  update_loop_kernel<<<1, 1, 0, stream>>>(state, count, numel, target);
  return cudaGetLastError();
}

cudaError_t fit_ratio(const double* state, double* ratio, cudaStream_t stream) {
  fit_ratio_kernel<<<1, 1, 0, stream>>>(state, ratio);
  return cudaGetLastError();
}

}  // namespace distq::cuda
