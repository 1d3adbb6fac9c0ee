// One pass that picks the entries beyond the threshold and remembers where they are.
#pragma once

#include <cstdint>
#include <vector>

#include "dtype.h"

namespace distq {

// The entries x[i] with x[i] != 0 and !(|x[i] - center| < threshold), in index order.
// The comparison runs in the compute type (float, or double for float64 tensors), with center and
// threshold rounded to it. Written as "not below" so NaN and Inf are always kept, as dense
// averaging would carry them; zeros are never kept, since they add nothing to the sum.
class Selection {
 public:
  Selection(const void* x, int64_t n, DType dtype, double center, double threshold);

  int64_t size() const { return size_; }

  // Writes the flattened indices (int32 or int64) and the selected elements, bit for bit in the
  // tensor's dtype. indices and values must hold size() entries each.
  void write_indices(int32_t* indices) const;
  void write_indices(int64_t* indices) const;
  void write_values(void* values) const;

  // |x[i] - center| - threshold over the finite selected entries: the excesses a later
  // peaks-over-threshold stage fits.
  std::vector<double> excesses(double center, double threshold) const;
  // Drops the selected entries with |x[i] - center| < threshold (compared in the compute type);
  // with a higher threshold than the selection's, the result is the selection at that threshold.
  // Returns the excesses of the kept entries over it, found in the same read: the next stage's data.
  std::vector<double> retain(double center, double threshold);

 private:
  template <typename Index>
  void write_indices_as(Index* indices) const;

  const void* x_;
  DType dtype_;
  // Indices found by each chunk, in chunk order: one read of x, no full-size mask.
  std::vector<std::vector<int64_t>> chunk_indices_;
  int64_t size_ = 0;
};

}  // namespace distq
