#include "fit.h"

#include <limits>
#include <vector>

#include "sample.h"

namespace distq {

namespace {

// The sample only has to put the shift near the centre; 64 strided reads do that.
constexpr int64_t kShiftSampleSize = 64;

double shift_for(const void* x, int64_t n, DType dtype) {
  return sample_mean(strided_sample(x, n, dtype, kShiftSampleSize));
}

}  // namespace

Fit fit(const void* x, int64_t n, DType dtype, Family family, const FamilyParams& params) {
  Fit result;
  const double ratio = params.ratio;
  switch (family) {
    case Family::kNormal: {
      const double shift = shift_for(x, n, dtype);
      const Moments m = compute_moments(x, n, dtype, shift, MomentSet::kSecond);
      result.center = shift + m.mean();
      result.scale = std::sqrt(m.central2());
      result.threshold = result.scale * normal_multiplier(ratio);
      break;
    }
    case Family::kStudentT: {
      const double shift = shift_for(x, n, dtype);
      const bool estimate = params.dof <= 0;
      const Moments m = compute_moments(x, n, dtype, shift, estimate ? MomentSet::kFourth : MomentSet::kSecond);
      const double variance = m.central2();
      result.center = shift + m.mean();
      result.dof = estimate ? dof_from_kurtosis(variance, m.central4()) : params.dof;
      // Moment matching: Var = s^2 nu / (nu - 2).
      const double variance_factor = std::isinf(result.dof) ? 1.0 : (result.dof - 2.0) / result.dof;
      result.scale = std::sqrt(variance * variance_factor);
      result.threshold = result.scale * student_t_multiplier(ratio, result.dof);
      break;
    }
    case Family::kLaplace: {
      std::vector<double> sample = strided_sample(x, n, dtype, params.sample_size);
      result.center = sample.empty() ? 0.0 : sample_quantile(sample, 0.5);
      // Given the centre, the maximum-likelihood b is the mean absolute deviation about it.
      const Moments m = compute_moments(x, n, dtype, result.center, MomentSet::kAbsolute);
      result.scale = m.sum_abs / m.count;
      result.threshold = result.scale * laplace_multiplier(ratio);
      break;
    }
    case Family::kCauchy: {
      std::vector<double> sample = strided_sample(x, n, dtype, params.sample_size);
      result.center = sample.empty() ? 0.0 : sample_quantile(sample, 0.5);
      // Half the interquartile range is the Cauchy scale gamma.
      result.scale = 0.5 * (sample_quantile(sample, 0.75) - sample_quantile(sample, 0.25));
      result.threshold = result.scale * cauchy_multiplier(ratio);
      break;
    }
    case Family::kExponential: {
      const Moments m = compute_moments(x, n, dtype, 0.0, MomentSet::kAbsolute);
      result.scale = m.sum_abs / m.count;
      result.threshold = result.scale * exponential_multiplier(ratio);
      break;
    }
  }
  // No finite element: nothing to fit. A NaN threshold makes the selection keep every nonzero
  // (here: every non-finite) entry, as dense averaging would.
  if (!std::isfinite(result.center)) result.center = 0.0;
  if (!std::isfinite(result.scale)) result.threshold = std::numeric_limits<double>::quiet_NaN();
  return result;
}

}  // namespace distq
