#include "threshold_cuda.h"

namespace distq::cuda {

namespace {

__global__ void threshold_kernel(const Fit* fit, Family family, const double* ratio, double* center_threshold) {
  center_threshold[0] = fit->center;
  center_threshold[1] = threshold_at(*fit, family, *ratio);
}

}  // namespace

cudaError_t threshold(const Fit* fit, Family family, const double* ratio, double* center_threshold,
                      cudaStream_t stream) {
  threshold_kernel<<<1, 1, 0, stream>>>(fit, family, ratio, center_threshold);
  return cudaGetLastError();
}

}  // namespace distq::cuda
