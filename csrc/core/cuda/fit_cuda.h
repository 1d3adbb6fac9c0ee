// The statistics pass of csrc/core/fit.h on the device: the same strided samples and sums,
// left in device memory for the fit that follows (fit_from_statistics is host/device code).
#pragma once

#include <cstdint>

#include "../dtype.h"
#include "../family.h"
#include "../fit.h"
#include "device.h"

namespace distq::cuda {

// Writes what measure_statistics (fit.h) measures on x[0..n) to *statistics (device memory).
void measure_statistics(const Device& device, const void* x, int64_t n, DType dtype, Family family,
                        const FitSettings& params, Statistics* statistics);

}  // namespace distq::cuda
