#include "fit_cuda.h"

#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include "moments_cuda.h"
#include "sample_cuda.h"

namespace distq::cuda {

namespace {

// fit.cpp's: the sample only has to put the shift near the centre.
constexpr int64_t kShiftSampleSize = 64;

template <typename T>
struct LoadAsDouble {
  const T* x;
  DISTQ_HOST_DEVICE double operator()(int64_t i) const { return static_cast<double>(load(x + i)); }
};

struct ResetStatistics {
  Statistics* statistics;
  DISTQ_HOST_DEVICE void operator()(int) const { *statistics = Statistics{}; }
};

// The mean of the finite values of the strided sample, summed in index order as the host does.
template <typename T>
struct ShiftFromSample {
  const T* x;
  int64_t n;
  Statistics* statistics;

  DISTQ_HOST_DEVICE void operator()(int) const {
    const int64_t m = n < kShiftSampleSize ? n : kShiftSampleSize;
    double sum = 0.0;
    int64_t finite = 0;
    for (int64_t i = 0; i < m; ++i) {
      const double v = static_cast<double>(load(x + i * n / m));
      if (is_finite(v)) {
        sum += v;
        ++finite;
      }
    }
    statistics->shift = finite > 0 ? sum / static_cast<double>(finite) : 0.0;
  }
};

template <typename T, MomentSet kSet>
void reduce_moments(const Device& device, const T* x, int64_t n, Statistics* statistics) {
  const auto moments = thrust::make_transform_iterator(thrust::counting_iterator<int64_t>(0),
                                                       ElementMoments<T, kSet>{x, &statistics->shift});
  device.reduce_into(moments, n, &statistics->moments, Moments{}, AddMoments{});
}

template <typename T>
void measure(const Device& device, const T* x, int64_t n, Family family, const FitSettings& params,
             Statistics* statistics) {
  device.run_once(ResetStatistics{statistics});
  const bool folded = params.center_at_zero;
  if (family == Family::kLaplace || family == Family::kCauchy) {
    OrderStatisticsOut out;
    out.median = &statistics->median;
    if (family == Family::kCauchy && !folded) {
      out.lower_quartile = &statistics->lower_quartile;
      out.upper_quartile = &statistics->upper_quartile;
    }
    if (family == Family::kLaplace && !folded) out.median_or_zero = &statistics->shift;
    const int64_t size = n < params.sample_size ? n : params.sample_size;
    sample_order_statistics(device, LoadAsDouble<T>{x}, n, nullptr, size, out);
  } else if (!folded && (family == Family::kNormal || family == Family::kStudentT)) {
    device.run_once(ShiftFromSample<T>{x, n, statistics});
  }
  // The Cauchy needs order only: no pass over the tensor.
  if (family == Family::kCauchy || n <= 0) return;
  switch (moments_for(family, params)) {
    case MomentSet::kSecond: return reduce_moments<T, MomentSet::kSecond>(device, x, n, statistics);
    case MomentSet::kFourth: return reduce_moments<T, MomentSet::kFourth>(device, x, n, statistics);
    case MomentSet::kAbsolute: return reduce_moments<T, MomentSet::kAbsolute>(device, x, n, statistics);
    case MomentSet::kLogAbsolute: return reduce_moments<T, MomentSet::kLogAbsolute>(device, x, n, statistics);
  }
}

}  // namespace

void measure_statistics(const Device& device, const void* x, int64_t n, DType dtype, Family family,
                        const FitSettings& params, Statistics* statistics) {
  dispatch_dtype(dtype, [&](auto tag) {
    measure(device, static_cast<const decltype(tag)*>(x), n, family, params, statistics);
  });
}

}  // namespace distq::cuda
