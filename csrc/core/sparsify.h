// sparsify = fit a family, then select beyond its threshold: the operation the bindings expose.
#pragma once

#include <cstdint>

#include "dtype.h"
#include "family.h"
#include "fit.h"
#include "select.h"

namespace distq {

// Indices are int32 below this many elements, int64 from it on.
constexpr int64_t kInt32IndexLimit = int64_t{1} << 31;

struct Sparsified {
  Fit fit;  // center and threshold as compared, i.e. rounded to the compute type
  Selection selection;
};

// Throws std::invalid_argument for a ratio outside (0, 1], a Student-t dof other than 0 that is
// not above 2, fewer than 1 stage, or a non-positive sample size.
Sparsified sparsify(const void* x, int64_t n, DType dtype, Family family, const FitSettings& params);

}  // namespace distq
