// Fitting a family's constants to a tensor (claim 7) and turning the ratio into a threshold
// (claim 8). The scalar formulas are host/device code so a GPU build computes them in place.
#pragma once

#include <cmath>
#include <cstdint>

#include "dtype.h"
#include "family.h"
#include "macros.h"
#include "moments.h"
#include "quantile.h"

namespace distq {

struct Fit {
  double center = 0;     // selection is |x - center| >= threshold
  double scale = 0;      // the family's scale constant (sigma, b, gamma, s or mu)
  double dof = 0;        // Student-t degrees of freedom used (fixed or estimated); 0 otherwise
  double threshold = 0;
};

// Two-sided tail multipliers: P(|X - c| >= scale * m) = ratio for the standardised family.
DISTQ_HOST_DEVICE inline double normal_multiplier(double ratio) { return -normal_quantile(0.5 * ratio); }
DISTQ_HOST_DEVICE inline double laplace_multiplier(double ratio) { return -log(ratio); }
// gamma * tan(pi/2 * (1 - ratio)), written as a cotangent to keep precision for small ratios.
DISTQ_HOST_DEVICE inline double cauchy_multiplier(double ratio) { return 1.0 / tan(0.5 * kPi * ratio); }
DISTQ_HOST_DEVICE inline double student_t_multiplier(double ratio, double dof) {
  return student_t_upper_quantile(0.5 * ratio, dof);
}
// One-sided on magnitudes: P(|X| >= mu * m) = ratio.
DISTQ_HOST_DEVICE inline double exponential_multiplier(double ratio) { return -log(ratio); }

// Degrees of freedom whose excess kurtosis 6 / (nu - 4) matches the tensor's; infinite (the
// normal limit) when the tensor is not heavier-tailed than a normal.
DISTQ_HOST_DEVICE inline double dof_from_kurtosis(double variance, double central4) {
  const double excess = central4 / (variance * variance) - 3.0;
  return excess > 0 ? 4.0 + 6.0 / excess : INFINITY;
}

Fit fit(const void* x, int64_t n, DType dtype, Family family, const FamilyParams& params);

}  // namespace distq
