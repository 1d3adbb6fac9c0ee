// One fused pass over a tensor for the sums every family's constants come from.
#pragma once

#include <cmath>
#include <cstdint>

#include "dtype.h"
#include "macros.h"

namespace distq {

// Which sums a pass accumulates; a family asks only for what its constants need.
enum class MomentSet {
  kSecond,  // count, sum d, sum d^2
  kFourth,  // ... plus sum d^3, sum d^4 (kurtosis)
  kAbsolute,  // count, sum |d|, sum d^2
  kLogAbsolute,  // count, and over the nonzero entries: their number, sum |x|, sum ln |x| (shift ignored)
};

// Sums of d = x - shift over the finite elements of x (NaN and Inf are left out). Shifting by a
// value near the centre keeps the variance free of cancellation.
struct Moments {
  double count = 0;
  double sum = 0;
  double sum2 = 0;
  double sum3 = 0;
  double sum4 = 0;
  double sum_abs = 0;
  double sum_log = 0;  // kLogAbsolute: sum of ln |x| over the nonzero entries
  double nonzero = 0;  // kLogAbsolute: number of nonzero finite entries

  DISTQ_HOST_DEVICE double mean() const { return sum / count; }
  DISTQ_HOST_DEVICE double central2() const {
    const double m1 = sum / count;
    return fmax(sum2 / count - m1 * m1, 0.0);
  }
  DISTQ_HOST_DEVICE double central4() const {
    const double m1 = sum / count;
    const double m2 = sum2 / count;
    const double m3 = sum3 / count;
    const double m4 = sum4 / count;
    return fmax(m4 - 4.0 * m1 * m3 + 6.0 * m1 * m1 * m2 - 3.0 * m1 * m1 * m1 * m1, 0.0);
  }
  DISTQ_HOST_DEVICE Moments& operator+=(const Moments& other) {
    count += other.count;
    sum += other.sum;
    sum2 += other.sum2;
    sum3 += other.sum3;
    sum4 += other.sum4;
    sum_abs += other.sum_abs;
    sum_log += other.sum_log;
    nonzero += other.nonzero;
    return *this;
  }
};

Moments compute_moments(const void* x, int64_t n, DType dtype, double shift, MomentSet set);

// What a later peaks-over-threshold stage fits, summed without writing it out: the sums (shift 0)
// of the excesses |x[i] - center| - threshold, computed in double, over the entries a selection at
// `threshold` keeps (x[i] != 0 and !(|x[i] - center| < threshold) in the compute type) whose
// excess is finite; `kept` counts every kept entry, NaN and Inf included. Runs on the calling thread.
struct ExcessMoments {
  Moments moments;
  int64_t kept = 0;
};
ExcessMoments compute_excess_moments(const void* x, int64_t n, DType dtype, double center, double threshold,
                                     MomentSet set);

}  // namespace distq
