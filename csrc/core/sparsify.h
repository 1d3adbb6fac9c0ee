// sparsify = fit a family, then select beyond its threshold: the operation the bindings expose.
#pragma once

#include <cmath>
#include <cstdint>

#include "dtype.h"
#include "family.h"
#include "fit.h"
#include "macros.h"
#include "select.h"

namespace distq {

// Indices are int32 below this many elements, int64 from it on.
constexpr int64_t kInt32IndexLimit = int64_t{1} << 31;

// Throws std::invalid_argument for a ratio outside (0, 1], a Student-t dof other than 0 that is
// not above 2, fewer than 1 stage, or a non-positive sample size.
void validate(const FitSettings& params);

// The stages' arithmetic, host/device code so that the CPU core and the device code (cuda/sparsify.cu)
// take the same steps.

// Rounds to the type the selection compares in (float, or double for float64 tensors), so the
// reported values are the ones used. The float goes through a volatile: GCC 12 at -O2 drops a
// double -> float -> double round trip that its SLP vectorizer pairs with another one (the
// centre's and the threshold's), and the selection would then compare against other values.
DISTQ_HOST_DEVICE inline double to_compute_type(double value, bool compute_in_double) {
  if (compute_in_double) return value;
  const volatile float narrowed = static_cast<float>(value);
  return static_cast<double>(narrowed);
}

// Stage 1 keeps at most this many times the target, so later stages read few entries.
constexpr double kFirstStageOverTarget = 8.0;

// The ratios stage 1 fits at: min(ratio^(1/stages), 8 ratio), and ratio^(1/stages), the widest,
// where it selects again if the first kept fewer than the target.
struct FirstStageRatios {
  double fit = 0;
  double widest = 0;
};
DISTQ_HOST_DEVICE inline FirstStageRatios first_stage_ratios(double ratio, int64_t stages) {
  const double widest = pow(ratio, 1.0 / static_cast<double>(stages));
  return {fmin(widest, kFirstStageOverTarget * ratio), widest};
}

// Room a selection whose count is still unknown is given (a device selection, whose count stays
// on the device): twice what stage 1 fits at, which the closed loop keeps near what it keeps, plus
// 1024, at most every entry. One that keeps more reports its count and is run again with room for it.
DISTQ_HOST_DEVICE inline int64_t selection_capacity(int64_t n, double ratio, int64_t stages) {
  const double room = 1024.0 + 2.0 * first_stage_ratios(ratio, stages).fit * static_cast<double>(n);
  return room < static_cast<double>(n) ? static_cast<int64_t>(room) : (n > 0 ? n : 0);
}

// One later stage: fits `later`, folded at 0, to `tail` (the statistics of the excesses of the
// `kept` entries still selected), at the ratio that takes them to `target` in the `left` stages
// left, and raises fitted's threshold by that quantile. False, fitted unchanged, for a degenerate tail.
DISTQ_HOST_DEVICE inline bool raise_threshold(Fit& fitted, Family later, const Statistics& tail, int64_t kept,
                                              double target, int64_t left, FitSettings stage, bool compute_in_double) {
  stage.ratio = pow(target / static_cast<double>(kept), 1.0 / static_cast<double>(left));
  stage.center_at_zero = true;
  const Fit fitted_tail = fit_from_statistics(later, tail, stage);
  if (!(fitted_tail.threshold > 0)) return false;
  fitted.threshold = to_compute_type(fitted.threshold + fitted_tail.threshold, compute_in_double);
  fitted.scale = fitted_tail.scale;
  fitted.shape = fitted_tail.shape;
  return true;
}

struct Sparsified {
  Fit fit;  // center and threshold as compared, i.e. rounded to the compute type
  Selection selection;
};

// Throws as validate() does.
Sparsified sparsify(const void* x, int64_t n, DType dtype, Family family, const FitSettings& params);

}  // namespace distq
