// The strided sample of csrc/core/sample.h on the device, and its order statistics by NumPy's
// linear rule. The sample holds the same values as the host's and its order statistics are exact,
// so medians and quartiles are the host's bit for bit.
#pragma once

#include <cmath>
#include <cstdint>

#include <thrust/sort.h>

#include "../macros.h"
#include "device.h"

namespace distq::cuda {

// Slot i of a sample of `size` slots from n values, n = *device_count when that is set (a count
// only the device knows), else `count`: value(i * n / m) for i < m = min(n, size) where that is
// finite; every other slot is +Inf, which sorts last and is not counted.
template <typename Source>
struct StridedSample {
  Source value;
  int64_t count;
  const int64_t* device_count;
  int64_t size;
  double* sample;

  DISTQ_HOST_DEVICE void operator()(int64_t slot) const {
    const int64_t n = device_count != nullptr ? *device_count : count;
    const int64_t m = n < size ? n : size;
    double v = INFINITY;
    if (slot < m) {
      const double candidate = value(slot * n / m);
      if (is_finite(candidate)) v = candidate;
    }
    sample[slot] = v;
  }
};

// The q-quantile of sorted[0..count) by NumPy's linear rule (sample.cpp's sample_quantile); NaN if empty.
DISTQ_HOST_DEVICE inline double sorted_quantile(const double* sorted, int64_t count, double q) {
  if (count == 0) return NAN;
  const double position = q * static_cast<double>(count - 1);
  const auto lower = static_cast<int64_t>(floor(position));
  const double low = sorted[lower];
  if (lower + 1 >= count) return low;
  return low + (position - static_cast<double>(lower)) * (sorted[lower + 1] - low);
}

// Where the order statistics go: device addresses, null for those not wanted.
struct OrderStatisticsOut {
  double* median = nullptr;
  double* lower_quartile = nullptr;
  double* upper_quartile = nullptr;
  double* median_or_zero = nullptr;  // the median, or 0 without a finite value (the Laplace shift)
};

struct OrderStatistics {
  const double* sorted;
  int64_t size;
  OrderStatisticsOut out;

  DISTQ_HOST_DEVICE void operator()(int) const {
    // The finite values come first: the first +Inf slot ends them.
    int64_t low = 0;
    int64_t high = size;
    while (low < high) {
      const int64_t middle = low + (high - low) / 2;
      if (is_finite(sorted[middle])) {
        low = middle + 1;
      } else {
        high = middle;
      }
    }
    const double median = sorted_quantile(sorted, low, 0.5);
    if (out.median != nullptr) *out.median = median;
    if (out.lower_quartile != nullptr) *out.lower_quartile = sorted_quantile(sorted, low, 0.25);
    if (out.upper_quartile != nullptr) *out.upper_quartile = sorted_quantile(sorted, low, 0.75);
    if (out.median_or_zero != nullptr) *out.median_or_zero = low == 0 ? 0.0 : median;
  }
};

// Samples `size` slots of the values source(i), i < n (n = *device_count when set, else count),
// sorts them and writes the order statistics `out` asks for.
template <typename Source>
void sample_order_statistics(const Device& device, Source source, int64_t count, const int64_t* device_count,
                             int64_t size, const OrderStatisticsOut& out) {
  Scratch<double> sample(device, size);
  device.for_each(size, StridedSample<Source>{source, count, device_count, size, sample.data()});
  thrust::sort(device.policy(), sample.data(), sample.data() + size);
  device.run_once(OrderStatistics{sample.data(), size, out});
}

}  // namespace distq::cuda
