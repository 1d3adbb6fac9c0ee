#include "sparsify_cuda.h"

#include "../control.h"
#include "../sparsify.h"
#include "fit_cuda.h"

namespace distq::cuda {

namespace {

// What the stages hand each other, in device memory.
struct Plan {
  Statistics statistics;  // stage 1's
  ExcessMoments tail;     // a later stage's sums
  double tail_median;     // a later stage's median (the Cauchy's, folded)
  Fit fit;
  double center_threshold[2];
  double widest_threshold;
  double ratio;
  FirstStageRatios first;
  double target;
  int64_t selected;  // stage 1's count
  int64_t widened;   // the count of stage 1 at the widest ratio
  bool widen;
  bool raising;      // a later stage may still raise the threshold
};

struct Begin {
  Plan* plan;
  const double* loop_state;
  double ratio;
  int64_t stages;
  int64_t n;

  DISTQ_HOST_DEVICE void operator()(int) const {
    *plan = Plan{};
    plan->ratio = loop_state != nullptr ? fit_ratio(loop_state) : ratio;
    plan->first = first_stage_ratios(plan->ratio, stages);
    plan->target = plan->ratio * static_cast<double>(n);
  }
};

struct FitFirstStage {
  Plan* plan;
  Family body;
  FitSettings params;
  bool in_double;

  DISTQ_HOST_DEVICE void operator()(int) const {
    FitSettings stage = params;
    stage.ratio = plan->first.fit;
    Fit fitted = fit_from_statistics(body, plan->statistics, stage);
    fitted.center = to_compute_type(fitted.center, in_double);
    fitted.threshold = to_compute_type(fitted.threshold, in_double);
    plan->fit = fitted;
    plan->center_threshold[0] = fitted.center;
    plan->center_threshold[1] = fitted.threshold;
    plan->widest_threshold = to_compute_type(threshold_at(fitted, body, plan->first.widest), in_double);
  }
};

// Stage 1 kept fewer than the target: select again at the widest ratio.
struct DecideWidening {
  Plan* plan;

  DISTQ_HOST_DEVICE void operator()(int) const {
    plan->widen = static_cast<double>(plan->selected) < plan->target && plan->first.fit < plan->first.widest;
    if (plan->widen) plan->fit.threshold = plan->center_threshold[1] = plan->widest_threshold;
  }
};

struct AdoptWidening {
  Plan* plan;
  int64_t capacity;

  DISTQ_HOST_DEVICE void operator()(int) const {
    if (plan->widen) plan->selected = plan->widened;
    // A stage 1 that did not fit leaves the later stages nothing to read.
    plan->raising = static_cast<double>(plan->selected) > plan->target && plan->selected <= capacity;
  }
};

struct RaiseThreshold {
  Plan* plan;
  Family later;
  FitSettings stage;
  int64_t left;
  bool in_double;

  DISTQ_HOST_DEVICE void operator()(int) const {
    if (!plan->raising || !(static_cast<double>(plan->tail.kept) > plan->target)) {
      plan->raising = false;
      return;
    }
    Statistics tail;
    tail.moments = plan->tail.moments;
    tail.median = plan->tail_median;
    plan->raising = raise_threshold(plan->fit, later, tail, plan->tail.kept, plan->target, left, stage, in_double);
    plan->center_threshold[1] = plan->fit.threshold;
  }
};

// The centre and threshold out; a stage 1 that did not fit reports its count, so the caller
// makes room for it.
struct Finish {
  const Plan* plan;
  double* center_threshold;
  int64_t* count;
  int64_t capacity;
  bool staged;

  DISTQ_HOST_DEVICE void operator()(int) const {
    center_threshold[0] = plan->center_threshold[0];
    center_threshold[1] = plan->center_threshold[1];
    if (staged && plan->selected > capacity) *count = plan->selected;
  }
};

// Device scratch of `capacity` entries shaped like `like`.
class EntriesScratch {
 public:
  EntriesScratch(const Device& device, const Entries& like, DType dtype, int64_t* count)
      : indices_(device, like.capacity * (like.wide_indices ? 8 : 4)),
        values_(device, like.capacity * static_cast<int64_t>(element_size(dtype))) {
    entries_ = Entries{indices_.data(), values_.data(), like.wide_indices, like.capacity, count};
  }
  const Entries& entries() const { return entries_; }

 private:
  Scratch<unsigned char> indices_;
  Scratch<unsigned char> values_;
  Entries entries_;
};

}  // namespace

// The stages of sparsify.cpp, with the host's branches taken on the device: stage 1 selects into
// scratch, selects again at the widest ratio only where the device found it kept too few (a
// pass that reads nothing otherwise), each later stage sums the excesses of what is still kept
// and raises the threshold (a step that does nothing once a stage stopped), and one compaction
// writes what the final threshold keeps.
void sparsify(const Device& device, const void* x, int64_t n, DType dtype, Family family, const FitSettings& params,
              const double* loop_state, const SparsifyOutput& out) {
  validate(params);
  const bool in_double = dtype == DType::kFloat64;
  Scratch<Plan> plan_scratch(device, 1);
  Plan* plan = plan_scratch.data();
  device.run_once(Begin{plan, loop_state, params.ratio, params.stages, n});
  measure_statistics(device, x, n, dtype, body_family(family), params, &plan->statistics);
  device.run_once(FitFirstStage{plan, body_family(family), params, in_double});
  const bool staged = params.stages > 1;
  if (!staged) {
    select_beyond(device, x, n, dtype, plan->center_threshold, nullptr, out.selection);
  } else {
    const EntriesScratch first(device, out.selection, dtype, &plan->selected);
    select_beyond(device, x, n, dtype, plan->center_threshold, nullptr, first.entries());
    device.run_once(DecideWidening{plan});
    Entries widened = first.entries();
    widened.count = &plan->widened;
    select_beyond(device, x, n, dtype, plan->center_threshold, &plan->widen, widened);
    device.run_once(AdoptWidening{plan, out.selection.capacity});
    const Family later = tail_family(family);
    FitSettings stage = params;
    stage.center_at_zero = true;
    for (int64_t left = params.stages - 1; left > 0; --left) {
      excess_moments(device, first.entries(), dtype, plan->center_threshold, moments_for(later, stage), &plan->tail);
      if (later == Family::kCauchy) {
        excess_median(device, first.entries(), dtype, plan->center_threshold, params.sample_size,
                      &plan->tail_median);
      }
      device.run_once(RaiseThreshold{plan, later, stage, left, in_double});
    }
    retain(device, first.entries(), dtype, plan->center_threshold, out.selection);
  }
  device.run_once(Finish{plan, out.center_threshold, out.selection.count, out.selection.capacity, staged});
}

}  // namespace distq::cuda
