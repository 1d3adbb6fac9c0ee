#include "moments.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "parallel.h"
#include "simd.h"

namespace distq {

Moments& Moments::operator+=(const Moments& other) {
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

  DISTQ_ALWAYS_INLINE void spill_into(Moments& block) const {
    block.count += sum_lanes(count);
    block.sum += sum_lanes(s1);
    block.sum2 += sum_lanes(s2);
    block.sum3 += sum_lanes(s3);
    block.sum4 += sum_lanes(s4);
    block.sum_abs += sum_lanes(s_abs);
    block.sum_log += sum_lanes(s_log);
    block.nonzero += sum_lanes(nonzero);
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

}  // namespace distq
