#include "moments.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "parallel.h"

namespace distq {

double Moments::central2() const {
  const double m1 = sum / count;
  return std::max(sum2 / count - m1 * m1, 0.0);
}

double Moments::central4() const {
  const double m1 = sum / count;
  const double m2 = sum2 / count;
  const double m3 = sum3 / count;
  const double m4 = sum4 / count;
  return std::max(m4 - 4.0 * m1 * m3 + 6.0 * m1 * m1 * m2 - 3.0 * m1 * m1 * m1 * m1, 0.0);
}

Moments& Moments::operator+=(const Moments& other) {
  count += other.count;
  nonfinite += other.nonfinite;
  sum += other.sum;
  sum2 += other.sum2;
  sum3 += other.sum3;
  sum4 += other.sum4;
  sum_abs += other.sum_abs;
  return *this;
}

namespace {

// Blocks accumulate in the compute type, which vectorises, and spill into double between
// blocks, which keeps the rounding error of a 2^26-element sum far below the 1e-5 we promise.
constexpr int64_t kBlock = 256;

template <typename T, MomentSet kSet>
Moments moments_range(const T* x, int64_t begin, int64_t end, double shift) {
  using C = typename Compute<T>::type;
  const C c = static_cast<C>(shift);
  const C largest = std::numeric_limits<C>::max();
  Moments total;
  for (int64_t block = begin; block < end; block += kBlock) {
    const int64_t stop = std::min(end, block + kBlock);
    C count = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s_abs = 0;
#pragma omp simd reduction(+ : count, s1, s2, s3, s4, s_abs)
    for (int64_t i = block; i < stop; ++i) {
      const C v = load(x + i);
      const bool finite = std::fabs(v) <= largest;  // false for NaN and +-Inf
      const C d = finite ? v - c : C(0);
      count += finite ? C(1) : C(0);
      if constexpr (kSet == MomentSet::kAbsolute) {
        s_abs += std::fabs(d);
      } else {
        const C d2 = d * d;
        s1 += d;
        s2 += d2;
        if constexpr (kSet == MomentSet::kFourth) {
          s3 += d2 * d;
          s4 += d2 * d2;
        }
      }
    }
    total.count += count;
    total.nonfinite += static_cast<double>(stop - block) - count;
    total.sum += s1;
    total.sum2 += s2;
    total.sum3 += s3;
    total.sum4 += s4;
    total.sum_abs += s_abs;
  }
  return total;
}

template <MomentSet kSet, typename T>
Moments moments_parallel(const T* x, int64_t n, double shift) {
  const int64_t chunks = chunk_count(n);
  std::vector<Moments> partial(chunks);
  parallel_chunks(n, chunks, [&](int64_t i, int64_t begin, int64_t end) {
    partial[i] = moments_range<T, kSet>(x, begin, end, shift);
  });
  Moments total;
  for (const auto& p : partial) total += p;
  return total;
}

}  // namespace

Moments compute_moments(const void* x, int64_t n, DType dtype, double shift, MomentSet set) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* data = static_cast<const T*>(x);
    switch (set) {
      case MomentSet::kSecond: return moments_parallel<MomentSet::kSecond>(data, n, shift);
      case MomentSet::kFourth: return moments_parallel<MomentSet::kFourth>(data, n, shift);
      case MomentSet::kAbsolute: return moments_parallel<MomentSet::kAbsolute>(data, n, shift);
    }
    return Moments{};
  });
}

}  // namespace distq
