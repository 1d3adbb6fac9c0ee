#include "fit.h"

#include <limits>
#include <vector>

#include "sample.h"

namespace distq {

namespace {

// Relative spreads below this are a constant tensor seen through float32 rounding (a spread of
// 1e-4 is a coefficient of variation of about 1%).
constexpr double kNoSpread = 1e-4;

// The sample only has to put the shift near the centre; 64 strided reads do that.
constexpr int64_t kShiftSampleSize = 64;

double shift_for(const void* x, int64_t n, DType dtype) {
  return sample_mean(strided_sample(x, n, dtype, kShiftSampleSize));
}

}  // namespace

Fit fit(const void* x, int64_t n, DType dtype, Family family, const FamilyParams& params) {
  Fit result;
  const bool folded = params.center_at_zero;
  switch (family) {
    case Family::kNormal: {
      const double shift = folded ? 0.0 : shift_for(x, n, dtype);
      const Moments m = compute_moments(x, n, dtype, shift, MomentSet::kSecond);
      result.center = folded ? 0.0 : shift + m.mean();
      result.scale = std::sqrt(folded ? m.sum2 / m.count : m.central2());
      break;
    }
    case Family::kStudentT: {
      const double shift = folded ? 0.0 : shift_for(x, n, dtype);
      const bool estimate = params.dof <= 0;
      const Moments m = compute_moments(x, n, dtype, shift, estimate ? MomentSet::kFourth : MomentSet::kSecond);
      const double variance = folded ? m.sum2 / m.count : m.central2();
      result.center = folded ? 0.0 : shift + m.mean();
      const double central4 = folded ? m.sum4 / m.count : m.central4();
      result.shape = estimate ? dof_from_kurtosis(variance, central4) : params.dof;
      // Moment matching: Var = s^2 nu / (nu - 2).
      const double variance_factor = std::isinf(result.shape) ? 1.0 : (result.shape - 2.0) / result.shape;
      result.scale = std::sqrt(variance * variance_factor);
      break;
    }
    case Family::kLaplace: {
      std::vector<double> sample = strided_sample(x, n, dtype, params.sample_size);
      result.center = sample.empty() || folded ? 0.0 : sample_quantile(sample, 0.5);
      // Given the centre, the maximum-likelihood b is the mean absolute deviation about it.
      const Moments m = compute_moments(x, n, dtype, result.center, MomentSet::kAbsolute);
      result.scale = m.sum_abs / m.count;
      break;
    }
    case Family::kCauchy: {
      std::vector<double> sample = strided_sample(x, n, dtype, params.sample_size);
      if (folded) {
        // Folded at 0 the data are magnitudes: their median is the half-IQR of the symmetric law.
        result.scale = sample_quantile(sample, 0.5);
      } else {
        result.center = sample.empty() ? 0.0 : sample_quantile(sample, 0.5);
        // Half the interquartile range is the Cauchy scale gamma.
        result.scale = 0.5 * (sample_quantile(sample, 0.75) - sample_quantile(sample, 0.25));
      }
      break;
    }
    case Family::kExponential: {
      const Moments m = compute_moments(x, n, dtype, 0.0, MomentSet::kAbsolute);
      result.scale = m.sum_abs / m.count;
      break;
    }
    case Family::kGamma: {
      // Fitted to the nonzero magnitudes (ln 0 has no place in the fit), so the tail ratio is
      // taken relative to them: ratio * finite / nonzero (threshold_at).
      const Moments m = compute_moments(x, n, dtype, 0.0, MomentSet::kLogAbsolute);
      const double mean = m.sum_abs / m.nonzero;
      // 0 for equal magnitudes, up to rounding: below kNoSpread there is no shape to fit.
      const double spread = std::log(mean) - m.sum_log / m.nonzero;
      result.shape = spread > kNoSpread ? gamma_shape(spread) : std::numeric_limits<double>::quiet_NaN();
      result.scale = mean / result.shape;
      result.fitted_fraction = m.nonzero / m.count;
      break;
    }
    case Family::kAuto:  // resolved by sparsify() into its body and tail families
    case Family::kGeneralizedPareto: {
      // Method of moments on magnitudes: r = mean^2 / var, xi = (1 - r) / 2, sigma = mean (r + 1) / 2.
      const Moments m = compute_moments(x, n, dtype, 0.0, MomentSet::kAbsolute);
      const double mean = m.sum_abs / m.count;
      const double variance = m.sum2 / m.count - mean * mean;
      const double r =
          variance > kNoSpread * mean * mean ? mean * mean / variance : std::numeric_limits<double>::quiet_NaN();
      result.shape = 0.5 * (1.0 - r);
      result.scale = 0.5 * mean * (r + 1.0);
      break;
    }
  }
  result.threshold = threshold_at(result, family, params.ratio);
  // No finite element: nothing to fit. A NaN threshold makes the selection keep every nonzero
  // (here: every non-finite) entry, as dense averaging would.
  if (!std::isfinite(result.center)) result.center = 0.0;
  if (!std::isfinite(result.scale)) result.threshold = std::numeric_limits<double>::quiet_NaN();
  // Equal magnitudes leave a shape undefined (NaN): then too every nonzero entry is kept.
  return result;
}

}  // namespace distq
