#include "control_cuda.h"

#include "../control.h"
#include "../macros.h"

namespace distq::cuda {

namespace {

struct UpdateLoop {
  double* state;
  const int64_t* count;
  int64_t numel;
  double target;

  DISTQ_HOST_DEVICE void operator()(int) const { update_loop_state(state, *count, numel, target); }
};

}  // namespace

void update_loop(const Device& device, double* state, const int64_t* count, int64_t numel, double target) {
  device.run_once(UpdateLoop{state, count, numel, target});
}

}  // namespace distq::cuda
