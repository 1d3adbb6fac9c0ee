// The closed-loop step of csrc/core/control.h on the device, reading the selected count where the
// selection left it, so the loop never copies a count to the host.
#pragma once

#include <cstdint>

#include "device.h"

namespace distq::cuda {

// update_loop_state(state, *count, numel, target) on the device; state (4 doubles) and count are
// device memory.
void update_loop(const Device& device, double* state, const int64_t* count, int64_t numel, double target);

}  // namespace distq::cuda
