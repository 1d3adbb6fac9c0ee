#include "fit_cuda.h"

namespace distq::cuda {

namespace {

__global__ void fit_kernel(Family family, const Statistics* statistics, FitSettings params, const double* ratio,
                           Fit* fitted, double* center_threshold) {
  if (ratio != nullptr) params.ratio = *ratio;
  *fitted = fit_from_statistics(family, *statistics, params);
  center_threshold[0] = fitted->center;
  center_threshold[1] = fitted->threshold;
}

}  // namespace

cudaError_t fit(Family family, const Statistics* statistics, const FitSettings& params, const double* ratio,
                Fit* fitted, double* center_threshold, cudaStream_t stream) {
  fit_kernel<<<1, 1, 0, stream>>>(family, statistics, params, ratio, fitted, center_threshold);
  return cudaGetLastError();
}

}  // namespace distq::cuda
