#include "fit.h"

#include <vector>

#include "sample.h"

namespace distq {

namespace {

// The sample only has to put the shift near the centre; 64 strided reads do that.
constexpr int64_t kShiftSampleSize = 64;

}  // namespace

// The host's statistics pass: the strided sample where the family needs order or a shift, then
// one fused pass for the moments.
Statistics measure_statistics(const void* x, int64_t n, DType dtype, Family family, const FitSettings& params) {
  Statistics statistics;
  const bool folded = params.center_at_zero;
  if (family == Family::kLaplace || family == Family::kCauchy) {
    std::vector<double> sample = strided_sample(x, n, dtype, params.sample_size);
    statistics.median = sample_quantile(sample, 0.5);
    if (family == Family::kCauchy && !folded) {
      statistics.lower_quartile = sample_quantile(sample, 0.25);
      statistics.upper_quartile = sample_quantile(sample, 0.75);
    }
    if (family == Family::kLaplace) statistics.shift = sample.empty() || folded ? 0.0 : statistics.median;
  } else if (!folded && (family == Family::kNormal || family == Family::kStudentT)) {
    statistics.shift = sample_mean(strided_sample(x, n, dtype, kShiftSampleSize));
  }
  // The Cauchy needs order only: no pass over the tensor.
  if (family != Family::kCauchy) {
    statistics.moments = compute_moments(x, n, dtype, statistics.shift, moments_for(family, params));
  }
  return statistics;
}

}  // namespace distq
