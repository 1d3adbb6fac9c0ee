// The selection of csrc/core/select.h on the device: one pass that writes the indices and the
// elements of the entries beyond a threshold, and the passes of the later peaks-over-threshold
// stages over what it kept. Thresholds, conditions and counts are device memory: a selection
// whose threshold a device fit chose runs without the host reading anything.
#pragma once

#include <cstdint>

#include "../dtype.h"
#include "../moments.h"
#include "device.h"

namespace distq::cuda {

// Entries in index order: indices (int64 when wide_indices, else int32) and elements in the
// tensor's dtype, `capacity` of each, and their number in *count (device memory). A count above
// capacity means the entries past capacity were not written: the caller runs it again with room
// for *count.
struct Entries {
  void* indices = nullptr;
  void* values = nullptr;
  bool wide_indices = false;
  int64_t capacity = 0;
  int64_t* count = nullptr;
};

// Writes the entries x[i] with x[i] != 0 and !(|x[i] - center| < threshold), compared in the
// compute type as Selection does, center_threshold = {center, threshold} (device memory). With a
// condition (device memory), only where *condition holds; otherwise nothing, and a count of 0
// (x is then not read).
void select_beyond(const Device& device, const void* x, int64_t n, DType dtype, const double* center_threshold,
                   const bool* condition, const Entries& out);

// Selection::tail_moments over `entries` (of at most entries.capacity, *entries.count of them):
// the sums of the excesses |x - center| - threshold of the entries still kept at center_threshold,
// and how many they are.
void excess_moments(const Device& device, const Entries& entries, DType dtype, const double* center_threshold,
                    MomentSet set, ExcessMoments* out);

// What measure_statistics gives a folded Cauchy fit of Selection::tail's excesses: the median of
// their strided sample of sample_size, written to *median.
void excess_median(const Device& device, const Entries& entries, DType dtype, const double* center_threshold,
                   int64_t sample_size, double* median);

// Selection::retain: the entries still kept at center_threshold, from `entries` to `out`.
void retain(const Device& device, const Entries& entries, DType dtype, const double* center_threshold,
            const Entries& out);

}  // namespace distq::cuda
