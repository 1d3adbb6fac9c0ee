// TensorFlow binding of csrc/core/sparsify: op registration, dtype mapping, output allocation,
// error translation. The ratio is an input, not an attribute, so a closed loop that changes it
// every step reuses one graph instead of retracing.
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

#include "../core/sparsify.h"

namespace distq::tensorflow_binding {

namespace tf = ::tensorflow;

namespace {

DType core_dtype(tf::DataType dtype) {
  switch (dtype) {
    case tf::DT_FLOAT: return DType::kFloat32;
    case tf::DT_DOUBLE: return DType::kFloat64;
    case tf::DT_HALF: return DType::kFloat16;
    case tf::DT_BFLOAT16: return DType::kBFloat16;
    default: throw std::invalid_argument("distq.sparsify: expected a float32, float64, float16 or bfloat16 tensor");
  }
}

}  // namespace

REGISTER_OP("DistqSparsify")
    .Input("x: T")
    .Input("ratio: float64")
    .Output("indices: Tindex")
    .Output("values: T")
    .Output("threshold: float64")
    .Output("center: float64")
    .Attr("T: {float, double, half, bfloat16}")
    .Attr("Tindex: {int32, int64} = DT_INT32")
    .Attr("distribution: string")
    .Attr("dof: float = 0")
    .Attr("sample_size: int = 4096")
    .Attr("stages: int = 1")
    .SetShapeFn([](tf::shape_inference::InferenceContext* c) {
      c->set_output(0, c->Vector(c->UnknownDim()));
      c->set_output(1, c->Vector(c->UnknownDim()));
      c->set_output(2, c->Scalar());
      c->set_output(3, c->Scalar());
      return absl::OkStatus();
    })
    .Doc("Entries beyond the threshold of a fitted distribution (horovod_distq.tensorflow.sparsify).");

class SparsifyOp : public tf::OpKernel {
 public:
  explicit SparsifyOp(tf::OpKernelConstruction* context) : tf::OpKernel(context) {
    std::string distribution;
    float dof = 0;
    OP_REQUIRES_OK(context, context->GetAttr("distribution", &distribution));
    OP_REQUIRES_OK(context, context->GetAttr("dof", &dof));
    OP_REQUIRES_OK(context, context->GetAttr("sample_size", &params_.sample_size));
    OP_REQUIRES_OK(context, context->GetAttr("stages", &params_.stages));
    OP_REQUIRES_OK(context, context->GetAttr("Tindex", &index_type_));
    params_.dof = dof;
    try {
      family_ = parse_family(distribution);
    } catch (const std::invalid_argument& error) {
      context->CtxFailure(absl::InvalidArgumentError(error.what()));
    }
  }

  void Compute(tf::OpKernelContext* context) override {
    const tf::Tensor& x = context->input(0);
    const tf::Tensor& ratio = context->input(1);
    OP_REQUIRES(context, tf::TensorShapeUtils::IsScalar(ratio.shape()),
                absl::InvalidArgumentError("distq.sparsify: ratio must be a scalar"));
    const int64_t n = x.NumElements();
    OP_REQUIRES(context, index_type_ == tf::DT_INT64 || n < kInt32IndexLimit,
                absl::InvalidArgumentError("distq.sparsify: int32 indices cannot address 2^31 or more entries"));
    FitSettings params = params_;
    params.ratio = ratio.scalar<double>()();
    try {
      const Sparsified result = sparsify(x.data(), n, core_dtype(x.dtype()), family_, params);
      const int64_t k = result.selection.size();
      tf::Tensor* indices = nullptr;
      tf::Tensor* values = nullptr;
      tf::Tensor* threshold = nullptr;
      tf::Tensor* center = nullptr;
      OP_REQUIRES_OK(context, context->allocate_output(0, tf::TensorShape({k}), &indices));
      OP_REQUIRES_OK(context, context->allocate_output(1, tf::TensorShape({k}), &values));
      OP_REQUIRES_OK(context, context->allocate_output(2, tf::TensorShape({}), &threshold));
      OP_REQUIRES_OK(context, context->allocate_output(3, tf::TensorShape({}), &center));
      if (index_type_ == tf::DT_INT32) {
        result.selection.write_indices(indices->flat<int32_t>().data());
      } else {
        result.selection.write_indices(indices->flat<int64_t>().data());
      }
      result.selection.write_values(values->data());
      threshold->scalar<double>()() = result.fit.threshold;
      center->scalar<double>()() = result.fit.center;
    } catch (const std::invalid_argument& error) {
      context->CtxFailure(absl::InvalidArgumentError(error.what()));
    }
  }

 private:
  Family family_ = Family::kNormal;
  FitSettings params_;
  tf::DataType index_type_ = tf::DT_INT32;
};

REGISTER_KERNEL_BUILDER(Name("DistqSparsify").Device(tf::DEVICE_CPU), SparsifyOp);

}  // namespace distq::tensorflow_binding
