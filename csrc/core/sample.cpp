#include "sample.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace distq {

std::vector<double> strided_sample(const void* x, int64_t n, DType dtype, int64_t sample_size) {
  std::vector<double> values;
  if (n <= 0 || sample_size <= 0) return values;
  const int64_t m = std::min(n, sample_size);
  values.reserve(m);
  dispatch_dtype(dtype, [&](auto tag) {
    const auto* data = static_cast<const decltype(tag)*>(x);
    for (int64_t i = 0; i < m; ++i) {
      const double v = load(data + i * n / m);  // spread over the whole tensor, whatever n / m
      if (std::isfinite(v)) values.push_back(v);
    }
  });
  return values;
}

double sample_quantile(std::vector<double>& values, double q) {
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  const double position = q * static_cast<double>(values.size() - 1);
  const auto lower = static_cast<size_t>(std::floor(position));
  std::nth_element(values.begin(), values.begin() + lower, values.end());
  const double low = values[lower];
  if (lower + 1 >= values.size()) return low;
  // The next order statistic is the smallest of the elements after the partition point.
  const double high = *std::min_element(values.begin() + lower + 1, values.end());
  return low + (position - static_cast<double>(lower)) * (high - low);
}

double sample_mean(const std::vector<double>& values) {
  if (values.empty()) return 0.0;
  return std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
}

}  // namespace distq
