#include "upcast.h"

#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/saved_variable.h>

#include "../autograd_node.h"

namespace spin {

bool NativeBf16Gemm() {
#if defined(__x86_64__)
  static const bool native = at::hasMKLDNN() && (__builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16"));
  return native;
#else
  return false;
#endif
}

namespace {

at::Tensor Product(const at::Tensor& x2d, const at::Tensor& weight, const at::Tensor& bias, bool conv1d) {
  const at::Tensor w = Upcast(weight);
  const at::Tensor out = conv1d ? (bias.defined() ? at::addmm(Upcast(bias), Upcast(x2d), w) : at::mm(Upcast(x2d), w)) : at::linear(Upcast(x2d), w, Upcast(bias));
  return out.to(x2d.scalar_type());
}

// ∂/∂x of a product with a frozen weight: the incoming gradient times W, formed as the
// composite form's backward forms it (float32, then rounded to x's dtype).
class FrozenProductBackward : public torch::autograd::Node {
 public:
  // Saved as autograd saves a tensor: an in-place change of the weight before backward, or a
  // second backward, is an error rather than a gradient of other weights.
  FrozenProductBackward(const at::Tensor& weight, bool conv1d, c10::ScalarType input_dtype)
      : weight_(weight, false), conv1d_(conv1d), input_dtype_(input_dtype) {}

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    if (!grads[0].defined()) return {at::Tensor()};
    const at::Tensor w = Upcast(weight_.unpack());
    const at::Tensor grad = Upcast(grads[0]);
    return {(conv1d_ ? at::mm(grad, w.t()) : at::mm(grad, w)).to(input_dtype_)};
  }

  void release_variables() override { weight_.reset_data(); }

 private:
  torch::autograd::SavedVariable weight_;
  bool conv1d_;
  c10::ScalarType input_dtype_;
};

}  // namespace

at::Tensor UpcastProduct(const at::Tensor& x2d, const at::Tensor& weight, const at::Tensor& bias, bool conv1d) {
  const bool frozen = !weight.requires_grad() && !(bias.defined() && bias.requires_grad());
  if (!frozen || !c10::GradMode::is_enabled() || !x2d.requires_grad()) return Product(x2d, weight, bias, conv1d);
  at::Tensor out;
  {
    c10::AutoGradMode no_grad(false);
    out = Product(x2d, weight, bias, conv1d);
  }
  AttachBackward(MakeNode<FrozenProductBackward>(weight, conv1d, x2d.scalar_type()), x2d, out);
  return out;
}

}  // namespace spin
