#include "sparsify.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace distq {

void validate(const FitSettings& params) {
  if (!(params.ratio > 0.0 && params.ratio <= 1.0)) {
    throw std::invalid_argument("distq: ratio must be in (0, 1], got " + std::to_string(params.ratio));
  }
  if (params.dof != 0.0 && !(params.dof > 2.0)) {
    throw std::invalid_argument("distq: student_t dof must be > 2 (finite variance) or 0 to estimate it, got " +
                                std::to_string(params.dof));
  }
  if (params.stages < 1) {
    throw std::invalid_argument("distq: stages must be at least 1, got " + std::to_string(params.stages));
  }
  if (params.sample_size <= 0) {
    throw std::invalid_argument("distq: sample_size must be positive, got " + std::to_string(params.sample_size));
  }
}

namespace {

// Laplace and Cauchy fits read a sample of their data in order; the other families only its sums.
bool fitted_from_sums(Family family) { return family != Family::kLaplace && family != Family::kCauchy; }

// The data of a later stage at `threshold`: how many entries it keeps, and the statistics of
// their excesses over it (summed in place where the family needs no order).
struct TailStatistics {
  int64_t kept = 0;
  Statistics statistics;
};

TailStatistics tail_statistics(const Selection& selection, Family family, const FitSettings& stage, double center,
                               double threshold) {
  TailStatistics result;
  if (fitted_from_sums(family)) {
    const ExcessMoments sums = selection.tail_moments(center, threshold, moments_for(family, stage));
    result.kept = sums.kept;
    result.statistics.moments = sums.moments;
  } else {
    const Selection::Tail tail = selection.tail(center, threshold);
    result.kept = tail.kept;
    result.statistics = measure_statistics(tail.excesses.data(), static_cast<int64_t>(tail.excesses.size()),
                                           DType::kFloat64, family, stage);
  }
  return result;
}

}  // namespace

// Peaks over threshold (SIDCo), without the bugs of its public code: stage 1 fits the tensor at
// min(ratio^(1/stages), 8 ratio) and selects (at ratio^(1/stages), from the same fit, if that kept
// fewer than the target: error-feedback-accumulated gradients have lighter tails than any fit
// expects); each later stage fits the family, folded at 0, to the excesses
// of the entries still selected over the current threshold, at the ratio that takes the count
// still selected to the target in the stages left (so a stage that kept too many is corrected by
// the next), and raises the threshold by that quantile. The tensor is read twice: once for the
// fit and once for the selection, which keeps the elements it picks, so the later stages read only
// those (at most 8x the target).
Sparsified sparsify(const void* x, int64_t n, DType dtype, Family family, const FitSettings& params) {
  validate(params);
  const bool in_double = dtype == DType::kFloat64;
  const FirstStageRatios first = first_stage_ratios(params.ratio, params.stages);
  FitSettings stage = params;
  stage.ratio = first.fit;
  Fit fitted = fit(x, n, dtype, body_family(family), stage);
  fitted.center = to_compute_type(fitted.center, in_double);
  fitted.threshold = to_compute_type(fitted.threshold, in_double);
  Selection selection(x, n, dtype, fitted.center, fitted.threshold, first.fit);
  const double target = params.ratio * static_cast<double>(n);
  if (params.stages > 1 && selection.size() < target && first.fit < first.widest) {
    fitted.threshold = to_compute_type(threshold_at(fitted, body_family(family), first.widest), in_double);
    selection = Selection(x, n, dtype, fitted.center, fitted.threshold, first.widest);
  }
  // The later stages read only what stage 1 kept (indices and elements, already out of the tensor):
  // each fits the excesses of the entries still kept and raises the threshold; one compaction at
  // the end drops the entries below the final threshold.
  stage.center_at_zero = true;
  const double first_threshold = fitted.threshold;
  const Family later = tail_family(family);
  TailStatistics tail;
  if (params.stages > 1 && selection.size() > target) {
    tail = tail_statistics(selection, later, stage, fitted.center, fitted.threshold);
  }
  for (int64_t left = params.stages - 1; left > 0 && static_cast<double>(tail.kept) > target; --left) {
    // A degenerate tail: keep what the last stage selected.
    if (!raise_threshold(fitted, later, tail.statistics, tail.kept, target, left, stage, in_double)) break;
    if (left > 1) tail = tail_statistics(selection, later, stage, fitted.center, fitted.threshold);
  }
  if (fitted.threshold != first_threshold) selection.retain(fitted.center, fitted.threshold);
  return Sparsified{fitted, std::move(selection)};
}

}  // namespace distq
