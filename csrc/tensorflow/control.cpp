// TensorFlow binding of csrc/core/control.h: one closed-loop step on a tensor's 4-double state,
// so the loop runs inside tf.function with its state in a tf.Variable.
#include <cstdint>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

#include "../core/control.h"

namespace distq::tensorflow_binding {

namespace tf = ::tensorflow;

REGISTER_OP("DistqUpdateLoopState")
    .Input("state: float64")
    .Input("selected: int64")
    .Input("numel: int64")
    .Input("target: float64")
    .Output("new_state: float64")
    .SetShapeFn([](tf::shape_inference::InferenceContext* c) {
      c->set_output(0, c->Vector(kLoopFields));
      return absl::OkStatus();
    })
    .Doc("One closed-loop step of the fit ratio (horovod_distq.tensorflow.RatioController).");

REGISTER_OP("DistqInitialLoopState")
    .Input("target: float64")
    .Output("state: float64")
    .SetShapeFn([](tf::shape_inference::InferenceContext* c) {
      c->set_output(0, c->Vector(kLoopFields));
      return absl::OkStatus();
    })
    .Doc("The closed-loop state of a tensor not seen before.");

class UpdateLoopStateOp : public tf::OpKernel {
 public:
  using tf::OpKernel::OpKernel;

  void Compute(tf::OpKernelContext* context) override {
    const tf::Tensor& state = context->input(0);
    OP_REQUIRES(context, state.NumElements() == kLoopFields,
                absl::InvalidArgumentError("distq.update_loop_state: the state must hold 4 float64 values"));
    tf::Tensor* updated = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, tf::TensorShape({kLoopFields}), &updated));
    double* out = updated->flat<double>().data();
    const double* in = state.flat<double>().data();
    for (int field = 0; field < kLoopFields; ++field) out[field] = in[field];
    update_loop_state(out, context->input(1).scalar<int64_t>()(), context->input(2).scalar<int64_t>()(),
                      context->input(3).scalar<double>()());
  }
};

class InitialLoopStateOp : public tf::OpKernel {
 public:
  using tf::OpKernel::OpKernel;

  void Compute(tf::OpKernelContext* context) override {
    tf::Tensor* state = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, tf::TensorShape({kLoopFields}), &state));
    initial_loop_state(context->input(0).scalar<double>()(), state->flat<double>().data());
  }
};

REGISTER_KERNEL_BUILDER(Name("DistqUpdateLoopState").Device(tf::DEVICE_CPU), UpdateLoopStateOp);
REGISTER_KERNEL_BUILDER(Name("DistqInitialLoopState").Device(tf::DEVICE_CPU), InitialLoopStateOp);

}  // namespace distq::tensorflow_binding
