// Hot loops written once with GCC/Clang vector extensions (32-byte vectors of the compute type),
// compiled twice: a portable build and one for x86-64-v3 (AVX2 + FMA + F16C), chosen at run time.
// The portable build splits each vector into whatever the target has (SSE2, NEON).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
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

template <typename V>
DISTQ_ALWAYS_INLINE double sum_lanes(V v) {
  double total = 0;
  for (int j = 0; j < static_cast<int>(sizeof(V) / sizeof(v[0])); ++j) total += v[j];
  return total;
}

// Vector width of each build.
constexpr int kPortableBytes = 16;
constexpr int kX86_64_V3Bytes = 32;

}  // namespace distq
