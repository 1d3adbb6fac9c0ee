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
  double fitted_fraction = 1;  // share of the entries the family was fitted to (gamma: the nonzero ones)
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

// The threshold of fitted constants at another ratio: the fit's statistics need not be recomputed.
DISTQ_HOST_DEVICE inline double threshold_at(const Fit& fitted, Family family, double ratio) {
  switch (family) {
    case Family::kNormal: return fitted.scale * normal_multiplier(ratio);
    case Family::kLaplace:
    case Family::kExponential: return fitted.scale * laplace_multiplier(ratio);
    case Family::kCauchy: return fitted.scale * cauchy_multiplier(ratio);
    case Family::kStudentT: return fitted.scale * student_t_multiplier(ratio, fitted.shape);
    case Family::kGamma: return fitted.scale * gamma_multiplier(fmin(1.0, ratio / fitted.fitted_fraction), fitted.shape);
    case Family::kGeneralizedPareto:
    case Family::kAuto: return fitted.scale * gpareto_multiplier(ratio, fitted.shape);
  }
  return NAN;
}

// Fits the family's constants to x[0..n) (claim 7) and sets the threshold at params.ratio (claim 8).
Fit fit(const void* x, int64_t n, DType dtype, Family family, const FamilyParams& params);

}  // namespace distq
