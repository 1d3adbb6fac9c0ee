// Element types the core reads, and their conversion to the type statistics are computed in.
// No framework header: bindings map their own dtype enums onto DType.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "macros.h"

namespace distq {

enum class DType { kFloat32, kFloat64, kFloat16, kBFloat16 };

// 16-bit storage types: bit patterns, converted to float on load (statistics never run in 16 bits).
struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

DISTQ_HOST_DEVICE inline float bits_to_float(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
#endif
}

// IEEE binary16 -> binary32, exact for every input (normals, subnormals, inf, NaN).
DISTQ_HOST_DEVICE inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) return bits_to_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return bits_to_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  if (mantissa == 0) return bits_to_float(sign);
  // Subnormal: value = mantissa * 2^-24, exact in float.
  const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
  return sign ? -magnitude : magnitude;
}

// Widened compute type: double for float64, float for everything narrower.
template <typename T>
struct Compute {
  using type = float;
};
template <>
struct Compute<double> {
  using type = double;
};

DISTQ_HOST_DEVICE inline float load(const float* p) { return *p; }
DISTQ_HOST_DEVICE inline double load(const double* p) { return *p; }
DISTQ_HOST_DEVICE inline float load(const Half* p) { return half_to_float(p->bits); }
DISTQ_HOST_DEVICE inline float load(const BFloat16* p) {
  return bits_to_float(static_cast<uint32_t>(p->bits) << 16);
}

inline size_t element_size(DType dtype) {
  return dtype == DType::kFloat64 ? 8 : dtype == DType::kFloat32 ? 4 : 2;
}

// Calls fn(T{}) with T the storage type of dtype; one switch instead of a binding per dtype.
template <typename Fn>
decltype(auto) dispatch_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32: return fn(float{});
    case DType::kFloat64: return fn(double{});
    case DType::kFloat16: return fn(Half{});
    case DType::kBFloat16: return fn(BFloat16{});
  }
  throw std::invalid_argument("distq: unsupported dtype");
}

}  // namespace distq
