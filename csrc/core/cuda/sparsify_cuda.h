// sparsify() of csrc/core/sparsify.h on the device: the same stages, each a device pass or a
// one-thread step, every decision between them taken on the device. Nothing is read on the host:
// the count stays in device memory for the caller to read with the step's other counts.
#pragma once

#include <cstdint>

#include "../dtype.h"
#include "../family.h"
#include "device.h"
#include "select_cuda.h"

namespace distq::cuda {

struct SparsifyOutput {
  Entries selection;                    // the entries kept, in index order
  double* center_threshold = nullptr;   // 2 doubles: the centre and threshold as compared
};

// Fits `family` to x[0..n) and writes the entries beyond its threshold to out, as sparsify() does
// on the host (same threshold up to the sums' rounding, so the same entries but for those within
// that rounding of it). The ratio is params.ratio, or fit_ratio(loop_state) when loop_state (the
// closed loop's state, device memory) is given. A count above out.selection.capacity means the
// selection did not fit (nothing past capacity was written): run it again with room for that many.
// Throws std::invalid_argument as validate() does.
void sparsify(const Device& device, const void* x, int64_t n, DType dtype, Family family, const FitSettings& params,
              const double* loop_state, const SparsifyOutput& out);

}  // namespace distq::cuda
