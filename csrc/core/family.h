// The predetermined distributions (claims 4-7) and how each turns fitted constants and a ratio
// into a threshold (claim 8). Names here are the ones users pass as `distribution=`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace distq {

enum class Family { kNormal, kLaplace, kCauchy, kStudentT, kExponential, kGamma, kGeneralizedPareto, kAuto };

// "auto" is a composite chosen per tensor by its kurtosis: the Student-t, whose dof comes from
// the tensor's excess kurtosis (heavy tails for raw gradients, close to normal for
// error-feedback-accumulated ones), fits the body (stage 1) and the generalized Pareto, the limit
// law of excesses over a high threshold, fits the tail (every later stage).
Family body_family(Family family);
Family tail_family(Family family);

// Parses a family name; throws std::invalid_argument listing the known names otherwise.
Family parse_family(const std::string& name);
const std::vector<std::string>& family_names();


struct FitSettings {
  double ratio = 0.01;         // target kept fraction, in (0, 1]
  double dof = 0.0;            // Student-t degrees of freedom; 0 = estimate from the kurtosis
  int64_t sample_size = 4096;  // strided sample for medians and quantiles
  int64_t stages = 1;          // peaks-over-threshold stages (1 = a single fit)
  // Fit the family folded at 0 (centre fixed at 0, scale from moments about 0): what later
  // stages do with the excesses over the previous threshold, which are magnitudes.
  bool center_at_zero = false;
};

}  // namespace distq
