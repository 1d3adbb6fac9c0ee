// The fit of csrc/core/fit.h on the device: fit_from_statistics over statistics the device
// computed (moments.cu, and a sorted strided sample for the families that need order), the ratio
// read from device memory (the closed loop's), the result left there for select(). Compiled by
// nvcc (scripts/check_cuda.sh in CI); not yet bound to a framework or run on a GPU.
#pragma once

#include <cuda_runtime.h>

#include "../family.h"
#include "../fit.h"

namespace distq::cuda {

// *fit = fit_from_statistics(family, *statistics, params) with params.ratio = *ratio when ratio is
// not null; center_threshold = {fit->center, fit->threshold}. Device pointers, one thread's work.
cudaError_t fit(Family family, const Statistics* statistics, const FitSettings& params, const double* ratio,
                Fit* fit, double* center_threshold, cudaStream_t stream);

}  // namespace distq::cuda
