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
  double shape = 0;      // Student-t dof, gamma shape a or generalized-Pareto xi; 0 for the others
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
// One-sided on magnitudes: P(|X| >= scale * m) = ratio.
DISTQ_HOST_DEVICE inline double exponential_multiplier(double ratio) { return -log(ratio); }
DISTQ_HOST_DEVICE inline double gamma_multiplier(double ratio, double shape) { return gamma_upper_quantile(ratio, shape); }
// (ratio^-xi - 1) / xi, which tends to the exponential's -ln(ratio) as xi -> 0.
DISTQ_HOST_DEVICE inline double gpareto_multiplier(double ratio, double xi) {
  return fabs(xi) < 1e-9 ? -log(ratio) : expm1(-xi * log(ratio)) / xi;
}

// Minka's closed-form approximation of the gamma shape from s = ln(mean) - mean(ln): the
// maximum-likelihood shape without iterating.
DISTQ_HOST_DEVICE inline double gamma_shape(double log_mean_minus_mean_log) {
  const double s = log_mean_minus_mean_log;
  return (3.0 - s + sqrt((s - 3.0) * (s - 3.0) + 24.0 * s)) / (12.0 * s);
}

// Degrees of freedom whose excess kurtosis 6 / (nu - 4) matches the tensor's; infinite (the
// normal limit) when the tensor is not heavier-tailed than a normal.
DISTQ_HOST_DEVICE inline double dof_from_kurtosis(double variance, double central4) {
  const double excess = central4 / (variance * variance) - 3.0;
  return excess > 0 ? 4.0 + 6.0 / excess : INFINITY;
}

Fit fit(const void* x, int64_t n, DType dtype, Family family, const FamilyParams& params);

}  // namespace distq
