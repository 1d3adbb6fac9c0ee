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

// Relative spreads below this are a constant tensor seen through float32 rounding (a spread of
// 1e-4 is a coefficient of variation of about 1%).
constexpr double kNoSpread = 1e-4;

// What a family's statistics pass measured: the moments about `shift` (the statistics set
// moments_for() names) and, for the families that need order, the strided sample's quartiles.
struct Statistics {
  Moments moments;
  double shift = 0;  // normal, Student-t: near the centre; Laplace: the sample median; else 0
  double median = NAN;
  double lower_quartile = NAN;
  double upper_quartile = NAN;
};

// Which sums a family's constants come from.
DISTQ_HOST_DEVICE inline MomentSet moments_for(Family family, const FitSettings& params) {
  switch (family) {
    case Family::kNormal: return MomentSet::kSecond;
    case Family::kStudentT: return params.dof <= 0 ? MomentSet::kFourth : MomentSet::kSecond;
    case Family::kGamma: return MomentSet::kLogAbsolute;
    default: return MomentSet::kAbsolute;
  }
}

// The family's constants from its statistics (claim 7) and the threshold at params.ratio (claim 8).
// Host/device: the CPU pass and a device reduction end in the same formulas.
DISTQ_HOST_DEVICE inline Fit fit_from_statistics(Family family, const Statistics& s, const FitSettings& params) {
  Fit result;
  const Moments& m = s.moments;
  const bool folded = params.center_at_zero;
  switch (family) {
    case Family::kNormal:
      result.center = folded ? 0.0 : s.shift + m.mean();
      result.scale = sqrt(folded ? m.sum2 / m.count : m.central2());
      break;
    case Family::kStudentT: {
      const double variance = folded ? m.sum2 / m.count : m.central2();
      result.center = folded ? 0.0 : s.shift + m.mean();
      const double central4 = folded ? m.sum4 / m.count : m.central4();
      result.shape = params.dof <= 0 ? dof_from_kurtosis(variance, central4) : params.dof;
      // Moment matching: Var = s^2 nu / (nu - 2).
      const double variance_factor = is_inf(result.shape) ? 1.0 : (result.shape - 2.0) / result.shape;
      result.scale = sqrt(variance * variance_factor);
      break;
    }
    case Family::kLaplace:
      // Given the centre (the sample median), the maximum-likelihood b is the mean absolute deviation.
      result.center = s.shift;
      result.scale = m.sum_abs / m.count;
      break;
    case Family::kCauchy:
      if (folded) {
        // Folded at 0 the data are magnitudes: their median is the half-IQR of the symmetric law.
        result.scale = s.median;
      } else {
        result.center = s.median == s.median ? s.median : 0.0;  // no sample: no centre
        // Half the interquartile range is the Cauchy scale gamma.
        result.scale = 0.5 * (s.upper_quartile - s.lower_quartile);
      }
      break;
    case Family::kExponential:
      result.scale = m.sum_abs / m.count;
      break;
    case Family::kGamma: {
      // Fitted to the nonzero magnitudes (ln 0 has no place in the fit), so the tail ratio is
      // taken relative to them: ratio * finite / nonzero (threshold_at).
      const double mean = m.sum_abs / m.nonzero;
      // 0 for equal magnitudes, up to rounding: below kNoSpread there is no shape to fit.
      const double spread = log(mean) - m.sum_log / m.nonzero;
      result.shape = spread > kNoSpread ? gamma_shape(spread) : NAN;
      result.scale = mean / result.shape;
      result.fitted_fraction = m.nonzero / m.count;
      break;
    }
    case Family::kAuto:  // resolved by sparsify() into its body and tail families
    case Family::kGeneralizedPareto: {
      // Method of moments on magnitudes: r = mean^2 / var, xi = (1 - r) / 2, sigma = mean (r + 1) / 2.
      const double mean = m.sum_abs / m.count;
      const double variance = m.sum2 / m.count - mean * mean;
      const double r = variance > kNoSpread * mean * mean ? mean * mean / variance : NAN;
      result.shape = 0.5 * (1.0 - r);
      result.scale = 0.5 * mean * (r + 1.0);
      break;
    }
  }
  result.threshold = threshold_at(result, family, params.ratio);
  // No finite element: nothing to fit. A NaN threshold makes the selection keep every nonzero
  // (here: every non-finite) entry, as dense averaging would. Equal magnitudes leave a shape
  // undefined (NaN): then too every nonzero entry is kept.
  if (!is_finite(result.center)) result.center = 0.0;
  if (!is_finite(result.scale)) result.threshold = NAN;
  return result;
}

// The statistics the family's constants come from, measured on x[0..n).
Statistics measure_statistics(const void* x, int64_t n, DType dtype, Family family, const FitSettings& params);

// Fits the family's constants to x[0..n) (claim 7) and sets the threshold at params.ratio (claim 8).
inline Fit fit(const void* x, int64_t n, DType dtype, Family family, const FitSettings& params) {
  return fit_from_statistics(family, measure_statistics(x, n, dtype, family, params), params);
}

}  // namespace distq
