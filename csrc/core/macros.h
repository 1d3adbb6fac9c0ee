// Portability macros shared by the host and device builds of the core.
#pragma once

#if defined(__CUDACC__)
#define DISTQ_HOST_DEVICE __host__ __device__
#else
#define DISTQ_HOST_DEVICE
#endif

namespace distq {

// Classification that compiles the same for host and device code, whatever <cmath> declares in
// the global namespace. Only valid without -ffast-math, which this project never uses.
DISTQ_HOST_DEVICE inline bool is_finite(double x) { return x - x == 0.0; }  // false for NaN and +-Inf
DISTQ_HOST_DEVICE inline bool is_inf(double x) { return x == x && x - x != 0.0; }

}  // namespace distq
