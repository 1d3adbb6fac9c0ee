// Closed-loop correction of the ratio fed to the fit, one step per tensor and training step
// (horovod_distq/torch/control.py says why and how). A function of a 4-double state, so it runs
// where the selected count lives: on the host for torch, inside the graph for TensorFlow, and on
// the device for GPU tensors later, without copying the count to the host.
#pragma once

#include <cmath>
#include <cstdint>

#include "macros.h"

namespace distq {

// State layout; a fresh tensor's state is initial_loop_state(target).
enum LoopField { kLogFit = 0, kLastLogFit = 1, kLastLogAchieved = 2, kSlope = 3, kLoopFields = 4 };

namespace loop_constants {
constexpr double kMinSlope = 0.1;
constexpr double kMaxSlope = 5.0;
constexpr double kSlopeMove = 0.4054651081081644;  // ln 1.5: smaller moves are dominated by gradient noise
constexpr double kMaxStep = 9.210340371976184;     // ln 1e4
constexpr double kLogLowestFitRatio = -69.07755278982137;  // ln 1e-30
// Within +-25% of the target the error is mostly the gradient's step-to-step change, which the
// next step will not repeat: half a step there feeds back half that noise.
constexpr double kNoiseBand = 0.22314355131420976;  // ln 1.25
constexpr double kNoiseGain = 0.5;
}  // namespace loop_constants

// last_log_fit is NaN until the first update.
DISTQ_HOST_DEVICE inline void initial_loop_state(double target, double* state) {
  state[kLogFit] = log(target);
  state[kLastLogFit] = NAN;
  state[kLastLogAchieved] = NAN;
  state[kSlope] = 1.0;
}

DISTQ_HOST_DEVICE inline double fit_ratio(const double* state) { return exp(state[kLogFit]); }

// Records that the fit at fit_ratio(state) selected `selected` of `numel` entries and moves the fit
// ratio by a secant step towards `target`, the slope re-learnt from large moves only.
DISTQ_HOST_DEVICE inline void update_loop_state(double* state, int64_t selected, int64_t numel, double target) {
  using namespace loop_constants;
  if (numel <= 0) return;
  // Half an entry when none was kept keeps the logarithm finite and the step bounded.
  const double kept = selected > 0 ? static_cast<double>(selected) : 0.5;
  const double log_achieved = log(kept / static_cast<double>(numel));
  const double log_fit = state[kLogFit];
  const bool has_last = state[kLastLogFit] == state[kLastLogFit];  // not NaN: a step was recorded
  if (has_last && fabs(log_fit - state[kLastLogFit]) > kSlopeMove) {
    const double secant = (log_achieved - state[kLastLogAchieved]) / (log_fit - state[kLastLogFit]);
    if (secant > 0) state[kSlope] = fmin(fmax(secant, kMinSlope), kMaxSlope);
  }
  const double error = log(target) - log_achieved;
  const double gain = fabs(error) < kNoiseBand ? kNoiseGain : 1.0;
  const double step = fmin(fmax(error / state[kSlope] * gain, -kMaxStep), kMaxStep);
  state[kLastLogFit] = log_fit;
  state[kLastLogAchieved] = log_achieved;
  state[kLogFit] = fmin(fmax(log_fit + step, kLogLowestFitRatio), 0.0);
}

}  // namespace distq
