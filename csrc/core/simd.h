// Hot loops written once with GCC/Clang vector extensions (32-byte vectors of the compute type),
// compiled twice: a portable build and one for x86-64-v3 (AVX2 + FMA + F16C), chosen at run time.
// The portable build splits each vector into whatever the target has (SSE2, NEON).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>

#include "dtype.h"

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__CUDACC__)
#define DISTQ_X86_CLONES 1
#define DISTQ_TARGET_X86_64_V3 __attribute__((target("avx2,fma,f16c")))
#else
#define DISTQ_X86_CLONES 0
#define DISTQ_TARGET_X86_64_V3
#endif

#define DISTQ_ALWAYS_INLINE inline __attribute__((always_inline))

namespace distq {

// Whether the x86-64-v3 builds run; DISTQ_PORTABLE_KERNELS=1 forces the portable ones (tests).
inline bool cpu_has_x86_64_v3() {
#if DISTQ_X86_CLONES
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c") && std::getenv("DISTQ_PORTABLE_KERNELS") == nullptr;
  return has;
#else
  return false;
#endif
}

// Vectors of kBytes bytes: 32 (AVX2) in the x86-64-v3 build, 16 (SSE2, NEON) in the portable one,
// so each build works on registers its target really has.
template <typename Element, int kBytes>
struct VectorType {
  typedef Element type __attribute__((vector_size(kBytes)));
};

// The vector of a compute type, its lane count and the integer vector its comparisons yield.
template <typename C, int kBytes>
struct Vec {
  using type = typename VectorType<C, kBytes>::type;
  using mask = typename VectorType<std::conditional_t<sizeof(C) == 8, int64_t, int32_t>, kBytes>::type;
  static constexpr int kLanes = kBytes / static_cast<int>(sizeof(C));
};

template <typename V>
DISTQ_ALWAYS_INLINE V load_bytes(const void* p) {
  V v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Loads Vec<Compute<T>, kBytes>::kLanes consecutive elements, widened to the compute type.
template <int kBytes>
DISTQ_ALWAYS_INLINE auto load_vec(const float* p) {
  return load_bytes<typename Vec<float, kBytes>::type>(p);
}
template <int kBytes>
DISTQ_ALWAYS_INLINE auto load_vec(const double* p) {
  return load_bytes<typename Vec<double, kBytes>::type>(p);
}
template <int kBytes>
DISTQ_ALWAYS_INLINE auto load_vec(const BFloat16* p) {
  using Narrow = typename VectorType<uint16_t, kBytes / 2>::type;
  using Wide = typename VectorType<uint32_t, kBytes>::type;
  const Wide wide = __builtin_convertvector(load_bytes<Narrow>(p), Wide) << 16;
  return load_bytes<typename Vec<float, kBytes>::type>(&wide);
}
template <int kBytes>
DISTQ_ALWAYS_INLINE auto load_vec(const Half* p) {
  using Result = typename Vec<float, kBytes>::type;
#if defined(__FLT16_MAX__)
  using Narrow = typename VectorType<_Float16, kBytes / 2>::type;
  return __builtin_convertvector(load_bytes<Narrow>(p), Result);  // vcvtph2ps with F16C
#else
  Result v;
  for (int j = 0; j < Vec<float, kBytes>::kLanes; ++j) v[j] = load(p + j);
  return v;
#endif
}

template <typename V>
DISTQ_ALWAYS_INLINE V abs_vec(V v) {
  return v < 0 ? -v : v;
}

// Natural log of positive normal lanes, as vector arithmetic (no libm call per element): split
// v = m * 2^e with m in [sqrt(1/2), sqrt(2)), then ln m = 2 atanh(z), z = (m - 1) / (m + 1), |z| < 0.172,
// by its series to z^11 (relative error below 1e-9, far under float's rounding).
template <typename V, typename Mask>
DISTQ_ALWAYS_INLINE V log_vec(V v) {
  using C = std::remove_reference_t<decltype(v[0])>;
  constexpr int kMantissaBits = sizeof(C) == 8 ? 52 : 23;
  constexpr int64_t kBias = sizeof(C) == 8 ? 1023 : 127;
  // Subnormal lanes are scaled into the normal range first (by 2^(mantissa bits + 1)).
  const auto subnormal = v < std::numeric_limits<C>::min();
  v = subnormal ? v * C(sizeof(C) == 8 ? 0x1p53 : 0x1p24) : v;
  const V rescaled = subnormal ? V{} + C(kMantissaBits + 1) * C(0.6931471805599453) : V{};
  const V one = V{} + 1;
  const Mask bits = load_bytes<Mask>(&v);
  const Mask mantissa_mask = Mask{} + ((static_cast<int64_t>(1) << kMantissaBits) - 1);
  const Mask m_bits = (bits & mantissa_mask) | load_bytes<Mask>(&one);
  V m = load_bytes<V>(&m_bits);
  V e = __builtin_convertvector((bits >> kMantissaBits) - kBias, V);
  const auto big = m > C(1.4142135623730951);
  m = big ? m * C(0.5) : m;
  e = big ? e + 1 : e;
  const V z = (m - 1) / (m + 1);
  const V z2 = z * z;
  const V series = 1 + z2 * (C(1) / 3 + z2 * (C(1) / 5 + z2 * (C(1) / 7 + z2 * (C(1) / 9 + z2 * (C(1) / 11)))));
  return e * C(0.6931471805599453) + 2 * z * series - rescaled;
}

template <typename V>
DISTQ_ALWAYS_INLINE double sum_lanes(V v) {
  double total = 0;
  for (int j = 0; j < static_cast<int>(sizeof(V) / sizeof(v[0])); ++j) total += v[j];
  return total;
}

// Bit l set when lane l of a comparison mask is true (lanes are all-ones or zero).
template <typename Mask>
DISTQ_ALWAYS_INLINE uint32_t lane_bits(Mask mask) {
  uint32_t bits = 0;
  for (int l = 0; l < static_cast<int>(sizeof(Mask) / sizeof(mask[0])); ++l) bits |= (mask[l] & 1u) << l;
  return bits;
}

#if DISTQ_X86_CLONES
// movmskps/movmskpd instead of a lane loop; a 32-byte mask is read as its two 16-byte halves.
using i32x4_t = VectorType<int32_t, 16>::type;
using i64x2_t = VectorType<int64_t, 16>::type;
DISTQ_ALWAYS_INLINE uint32_t lane_bits(i32x4_t mask) {
  return static_cast<uint32_t>(__builtin_ia32_movmskps(load_bytes<VectorType<float, 16>::type>(&mask)));
}
DISTQ_ALWAYS_INLINE uint32_t lane_bits(i64x2_t mask) {
  return static_cast<uint32_t>(__builtin_ia32_movmskpd(load_bytes<VectorType<double, 16>::type>(&mask)));
}
template <typename Half, typename Mask>
DISTQ_ALWAYS_INLINE uint32_t lane_bits_by_halves(Mask mask) {
  const Half low = load_bytes<Half>(&mask);
  const Half high = load_bytes<Half>(reinterpret_cast<const char*>(&mask) + sizeof(Half));
  return lane_bits(low) | lane_bits(high) << (sizeof(Half) / sizeof(low[0]));
}
DISTQ_ALWAYS_INLINE uint32_t lane_bits(VectorType<int32_t, 32>::type mask) {
  return lane_bits_by_halves<i32x4_t>(mask);
}
DISTQ_ALWAYS_INLINE uint32_t lane_bits(VectorType<int64_t, 32>::type mask) {
  return lane_bits_by_halves<i64x2_t>(mask);
}
#endif

// Vector width of each build.
constexpr int kPortableBytes = 16;
constexpr int kX86_64_V3Bytes = 32;

}  // namespace distq
