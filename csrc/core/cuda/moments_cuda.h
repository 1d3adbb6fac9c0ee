// The sums of csrc/core/moments.h as a device reduction: each entry becomes its own Moments, and
// a reduce adds them up in double. The host pass accumulates in the compute type and spills into
// double every 1024 entries, so the two agree to the sums' rounding, not bit for bit.
#pragma once

#include <cmath>
#include <cstdint>

#include "../dtype.h"
#include "../macros.h"
#include "../moments.h"

namespace distq::cuda {

// The contribution of one value v to the sums of `kSet` about `shift` (moments.h: NaN and Inf add
// nothing; kLogAbsolute ignores the shift), with d = v - shift computed in v's type, as the host does.
template <MomentSet kSet, typename C>
DISTQ_HOST_DEVICE inline Moments moments_of_value(C v, double shift) {
  Moments m;
  if (!is_finite(static_cast<double>(v))) return m;
  m.count = 1;
  if constexpr (kSet == MomentSet::kLogAbsolute) {
    const double magnitude = fabs(static_cast<double>(v));
    m.sum_abs = magnitude;
    if (magnitude > 0) {
      m.nonzero = 1;
      m.sum_log = log(magnitude);
    }
  } else {
    const double d = static_cast<double>(v - static_cast<C>(shift));
    if constexpr (kSet == MomentSet::kAbsolute) {
      m.sum_abs = fabs(d);
      m.sum2 = d * d;
    } else {
      m.sum = d;
      m.sum2 = d * d;
      if constexpr (kSet == MomentSet::kFourth) {
        m.sum3 = d * d * d;
        m.sum4 = d * d * d * d;
      }
    }
  }
  return m;
}

struct AddMoments {
  DISTQ_HOST_DEVICE Moments operator()(Moments a, const Moments& b) const { return a += b; }
};

// Entry i of x's contribution, about the shift an earlier kernel left in *shift.
template <typename T, MomentSet kSet>
struct ElementMoments {
  const T* x;
  const double* shift;

  DISTQ_HOST_DEVICE Moments operator()(int64_t i) const { return moments_of_value<kSet>(load(x + i), *shift); }
};

struct AddExcessMoments {
  DISTQ_HOST_DEVICE ExcessMoments operator()(ExcessMoments a, const ExcessMoments& b) const {
    a.moments += b.moments;
    a.kept += b.kept;
    return a;
  }
};

}  // namespace distq::cuda
