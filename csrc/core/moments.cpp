#include "moments.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "parallel.h"
#include "simd.h"

namespace distq {

namespace {

// Each sum is accumulated in two vector registers of the compute type (independent chains hide
// the add latency) and spilled into double every kBlock elements, which keeps the rounding error
// of a 2^26-element sum far below the 1e-5 the thresholds promise.
constexpr int64_t kBlock = 1024;

template <typename C, int kBytes, MomentSet kSet, bool kMaskNonFinite>
struct VectorSums {
  using V = typename Vec<C, kBytes>::type;
  using Mask = typename Vec<C, kBytes>::mask;
  V count{}, s1{}, s2{}, s3{}, s4{}, s_abs{}, s_log{}, nonzero{};

  DISTQ_ALWAYS_INLINE void add(V v, V shift) {
    V d = v - shift;
    if constexpr (kMaskNonFinite) {
      const auto finite = abs_vec(v) <= std::numeric_limits<C>::max();  // false for NaN, +-Inf
      d = finite ? d : V{};
      v = finite ? v : V{};
      count += finite ? V{} + 1 : V{};
    }
    if constexpr (kSet == MomentSet::kLogAbsolute) {
      const V magnitude = abs_vec(v);
      const auto positive = magnitude > 0;
      nonzero += positive ? V{} + 1 : V{};
      s_abs += magnitude;
      s_log += positive ? log_vec<V, Mask>(positive ? magnitude : V{} + 1) : V{};
    } else if constexpr (kSet == MomentSet::kAbsolute) {
      s_abs += abs_vec(d);
      s2 += d * d;
    } else {
      const V d2 = d * d;
      s1 += d;
      s2 += d2;
      if constexpr (kSet == MomentSet::kFourth) {
        s3 += d2 * d;
        s4 += d2 * d2;
      }
    }
  }

  // Only the sums the set accumulates: the others are zero, and adding them would cost a
  // horizontal sum each per block.
  DISTQ_ALWAYS_INLINE void spill_into(Moments& block) const {
    if constexpr (kMaskNonFinite) block.count += sum_lanes(count);
    if constexpr (kSet == MomentSet::kLogAbsolute) {
      block.sum_abs += sum_lanes(s_abs);
      block.sum_log += sum_lanes(s_log);
      block.nonzero += sum_lanes(nonzero);
    } else if constexpr (kSet == MomentSet::kAbsolute) {
      block.sum2 += sum_lanes(s2);
      block.sum_abs += sum_lanes(s_abs);
    } else {
      block.sum += sum_lanes(s1);
      block.sum2 += sum_lanes(s2);
      if constexpr (kSet == MomentSet::kFourth) {
        block.sum3 += sum_lanes(s3);
        block.sum4 += sum_lanes(s4);
      }
    }
  }
};

// Sums of one element, for the tail that does not fill a vector.
template <MomentSet kSet, bool kMaskNonFinite>
DISTQ_ALWAYS_INLINE void add_scalar(Moments& block, double v, double shift) {
  if (kMaskNonFinite && !std::isfinite(v)) return;
  block.count += kMaskNonFinite ? 1 : 0;
  if (kSet == MomentSet::kLogAbsolute) {
    const double magnitude = std::fabs(v);
    block.sum_abs += magnitude;
    if (magnitude > 0) {
      block.nonzero += 1;
      block.sum_log += std::log(magnitude);
    }
    return;
  }
  const double d = v - shift;
  block.sum += kSet == MomentSet::kAbsolute ? 0 : d;
  block.sum2 += d * d;
  block.sum3 += kSet == MomentSet::kFourth ? d * d * d : 0;
  block.sum4 += kSet == MomentSet::kFourth ? d * d * d * d : 0;
  block.sum_abs += kSet == MomentSet::kAbsolute ? std::fabs(d) : 0;
}

template <int kBytes, typename T, MomentSet kSet, bool kMaskNonFinite>
DISTQ_ALWAYS_INLINE Moments moments_body(const T* x, int64_t begin, int64_t end, double shift) {
  using C = typename Compute<T>::type;
  using V = typename Vec<C, kBytes>::type;
  constexpr int64_t kLanes = Vec<C, kBytes>::kLanes;
  const V c = V{} + static_cast<C>(shift);
  Moments total;
  for (int64_t block = begin; block < end; block += kBlock) {
    const int64_t stop = std::min(end, block + kBlock);
    VectorSums<C, kBytes, kSet, kMaskNonFinite> even, odd;
    int64_t i = block;
    for (; i + 2 * kLanes <= stop; i += 2 * kLanes) {
      even.add(load_vec<kBytes>(x + i), c);
      odd.add(load_vec<kBytes>(x + i + kLanes), c);
    }
    Moments sums;
    even.spill_into(sums);
    odd.spill_into(sums);
    for (; i < stop; ++i) add_scalar<kSet, kMaskNonFinite>(sums, load(x + i), static_cast<C>(shift));
    if (!kMaskNonFinite) sums.count = static_cast<double>(stop - block);
    total += sums;
  }
  return total;
}

template <typename T, MomentSet kSet, bool kMask>
Moments moments_portable(const T* x, int64_t begin, int64_t end, double shift) {
  return moments_body<kPortableBytes, T, kSet, kMask>(x, begin, end, shift);
}

template <typename T, MomentSet kSet, bool kMask>
DISTQ_TARGET_X86_64_V3 Moments moments_x86_64_v3(const T* x, int64_t begin, int64_t end, double shift) {
  return moments_body<kX86_64_V3Bytes, T, kSet, kMask>(x, begin, end, shift);
}

template <MomentSet kSet, bool kMask, typename T>
Moments moments_parallel(const T* x, int64_t n, double shift) {
  const int64_t chunks = chunk_count(n);
  std::vector<Moments> partial(chunks);
  const bool v3 = cpu_has_x86_64_v3();
  parallel_chunks(n, chunks, [&](int64_t i, int64_t begin, int64_t end) {
    partial[i] = v3 ? moments_x86_64_v3<T, kSet, kMask>(x, begin, end, shift)
                    : moments_portable<T, kSet, kMask>(x, begin, end, shift);
  });
  Moments total;
  for (const auto& p : partial) total += p;
  return total;
}

template <MomentSet kSet, typename T>
Moments moments_in_double(const T* x, int64_t n, double shift) {
  const int64_t chunks = chunk_count(n);
  std::vector<Moments> partial(chunks);
  parallel_chunks(n, chunks, [&](int64_t i, int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) add_scalar<kSet, true>(partial[i], load(x + j), shift);
  });
  Moments total;
  for (const auto& p : partial) total += p;
  return total;
}

// The excesses over a threshold of the entries a selection keeps, kLanes doubles at a time: the
// keep test runs in the compute type on kLanes elements, the excess in double, and the entries not
// kept become NaN, which the masked sums leave out.
template <int kBytes, typename T, MomentSet kSet>
DISTQ_ALWAYS_INLINE ExcessMoments excess_moments_body(const T* x, int64_t n, double center, double threshold) {
  using C = typename Compute<T>::type;
  using D = typename Vec<double, kBytes>::type;
  using DMask = typename Vec<double, kBytes>::mask;
  constexpr int64_t kLanes = Vec<double, kBytes>::kLanes;
  constexpr int kNarrowBytes = kBytes * static_cast<int>(sizeof(C)) / 8;  // kLanes lanes of C
  using N = typename Vec<C, kNarrowBytes>::type;
  const N c = N{} + static_cast<C>(center);
  const N t = N{} + static_cast<C>(threshold);
  const D center_d = D{} + center;
  const D threshold_d = D{} + threshold;
  const D not_kept = D{} + std::numeric_limits<double>::quiet_NaN();
  ExcessMoments total;
  for (int64_t block = 0; block < n; block += kBlock) {
    const int64_t stop = std::min(n, block + kBlock);
    VectorSums<double, kBytes, kSet, true> even, odd;
    DMask kept{};
    const auto add = [&](VectorSums<double, kBytes, kSet, true>& sums, int64_t at) {
      const N v = load_vec<kNarrowBytes>(x + at);
      const DMask keeps = __builtin_convertvector((v != 0) & ~(abs_vec(v - c) < t), DMask);
      const D excess = abs_vec(__builtin_convertvector(v, D) - center_d) - threshold_d;
      sums.add(keeps ? excess : not_kept, D{});
      kept -= keeps;
    };
    int64_t i = block;
    for (; i + 2 * kLanes <= stop; i += 2 * kLanes) {
      add(even, i);
      add(odd, i + kLanes);
    }
    for (; i + kLanes <= stop; i += kLanes) add(even, i);
    Moments block_sums;
    even.spill_into(block_sums);
    odd.spill_into(block_sums);
    for (int lane = 0; lane < kLanes; ++lane) total.kept += kept[lane];
    for (; i < stop; ++i) {
      const C v = load(x + i);
      if (v == C(0) || std::fabs(v - static_cast<C>(center)) < static_cast<C>(threshold)) continue;
      total.kept += 1;
      add_scalar<kSet, true>(block_sums, std::fabs(static_cast<double>(v) - center) - threshold, 0.0);
    }
    total.moments += block_sums;
  }
  return total;
}

template <typename T, MomentSet kSet>
ExcessMoments excess_moments_portable(const T* x, int64_t n, double center, double threshold) {
  return excess_moments_body<kPortableBytes, T, kSet>(x, n, center, threshold);
}

template <typename T, MomentSet kSet>
DISTQ_TARGET_X86_64_V3 ExcessMoments excess_moments_x86_64_v3(const T* x, int64_t n, double center,
                                                               double threshold) {
  return excess_moments_body<kX86_64_V3Bytes, T, kSet>(x, n, center, threshold);
}

template <MomentSet kSet, typename T>
ExcessMoments excess_moments_of(const T* x, int64_t n, double center, double threshold) {
  return cpu_has_x86_64_v3() ? excess_moments_x86_64_v3<T, kSet>(x, n, center, threshold)
                             : excess_moments_portable<T, kSet>(x, n, center, threshold);
}

double probe(const Moments& m) { return m.sum + m.sum2 + m.sum4 + m.sum_abs + m.sum_log; }

// The first pass assumes every element is finite, which keeps the loop free of masks; a NaN or
// Inf poisons its sums, and only then a second, masked pass counts them out. Should the sums
// still overflow (squares of float32 values beyond 1.8e19), a last pass accumulates in double.
template <MomentSet kSet, typename T>
Moments moments_of(const T* x, int64_t n, double shift) {
  const Moments fast = moments_parallel<kSet, false>(x, n, shift);
  if (std::isfinite(probe(fast))) return fast;
  const Moments masked = moments_parallel<kSet, true>(x, n, shift);
  if (std::isfinite(probe(masked))) return masked;
  return moments_in_double<kSet>(x, n, shift);
}

}  // namespace

Moments compute_moments(const void* x, int64_t n, DType dtype, double shift, MomentSet set) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* data = static_cast<const T*>(x);
    switch (set) {
      case MomentSet::kSecond: return moments_of<MomentSet::kSecond>(data, n, shift);
      case MomentSet::kFourth: return moments_of<MomentSet::kFourth>(data, n, shift);
      case MomentSet::kAbsolute: return moments_of<MomentSet::kAbsolute>(data, n, shift);
      case MomentSet::kLogAbsolute: return moments_of<MomentSet::kLogAbsolute>(data, n, shift);
    }
    return Moments{};
  });
}

ExcessMoments compute_excess_moments(const void* x, int64_t n, DType dtype, double center, double threshold,
                                     MomentSet set) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* data = static_cast<const T*>(x);
    switch (set) {
      case MomentSet::kSecond: return excess_moments_of<MomentSet::kSecond>(data, n, center, threshold);
      case MomentSet::kFourth: return excess_moments_of<MomentSet::kFourth>(data, n, center, threshold);
      case MomentSet::kAbsolute: return excess_moments_of<MomentSet::kAbsolute>(data, n, center, threshold);
      case MomentSet::kLogAbsolute: return excess_moments_of<MomentSet::kLogAbsolute>(data, n, center, threshold);
    }
    return ExcessMoments{};
  });
}

}  // namespace distq
