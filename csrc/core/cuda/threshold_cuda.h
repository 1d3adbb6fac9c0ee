// Fitted constants to a threshold on the device (claim 8): the host's threshold_at, whose quantile
// functions (csrc/core/quantile.h) are host/device code. Compiled by nvcc (scripts/check_cuda.sh
// in CI); not yet bound to a framework or run on a GPU (issue 5).
#pragma once

#include <cuda_runtime.h>

#include "../family.h"
#include "../fit.h"

namespace distq::cuda {

// center_threshold[0] = fit->center, center_threshold[1] = threshold_at(*fit, family, *ratio),
// all in device memory: what select() reads.
cudaError_t threshold(const Fit* fit, Family family, const double* ratio, double* center_threshold,
                      cudaStream_t stream);

}  // namespace distq::cuda
