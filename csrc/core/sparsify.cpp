#include "sparsify.h"

#include <stdexcept>
#include <string>

namespace distq {

namespace {

void validate(const FamilyParams& params) {
  if (!(params.ratio > 0.0 && params.ratio <= 1.0)) {
    throw std::invalid_argument("distq: ratio must be in (0, 1], got " + std::to_string(params.ratio));
  }
  if (params.dof != 0.0 && !(params.dof > 2.0)) {
    throw std::invalid_argument("distq: student_t dof must be > 2 (finite variance) or 0 to estimate it, got " +
                                std::to_string(params.dof));
  }
  if (params.sample_size <= 0) {
    throw std::invalid_argument("distq: sample_size must be positive, got " + std::to_string(params.sample_size));
  }
}

// Rounds to the type the selection compares in, so the reported values are the ones used.
double to_compute_type(double value, DType dtype) {
  return dtype == DType::kFloat64 ? value : static_cast<double>(static_cast<float>(value));
}

}  // namespace

Sparsified sparsify(const void* x, int64_t n, DType dtype, Family family, const FamilyParams& params) {
  validate(params);
  Fit fitted = fit(x, n, dtype, family, params);
  fitted.center = to_compute_type(fitted.center, dtype);
  fitted.threshold = to_compute_type(fitted.threshold, dtype);
  Selection selection(x, n, dtype, fitted.center, fitted.threshold);
  return Sparsified{fitted, std::move(selection)};
}

}  // namespace distq
