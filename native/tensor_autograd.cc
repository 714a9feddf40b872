// Autograd on tensor handles: requiresGrad, backward, grad, zeroGrad.
#include <ATen/ATen.h>

#include "errors.h"
#include "tensor.h"

namespace spin {

Napi::Value Tensor::RequiresGrad(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.requiresGrad", { return Napi::Boolean::New(info.Env(), Value(args.call()).requires_grad()); });
}

Napi::Value Tensor::IsLeaf(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.isLeaf", { return Napi::Boolean::New(info.Env(), Value(args.call()).is_leaf()); });
}

Napi::Value Tensor::SetRequiresGrad(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.setRequiresGrad", {
    args.ExpectAtMost(1);
    const bool requires_grad = args.Bool(0, "requiresGrad");
    at::Tensor self = Value(args.call());
    if (requires_grad && !at::isFloatingType(self.scalar_type())) {
      throw SpinError(ErrorCode::kDType, std::string("only floating-point tensors can require gradients, not ") +
                                             c10::toString(self.scalar_type()));
    }
    if (!self.is_leaf()) {
      throw SpinError(ErrorCode::kInvalidArgument,
                      "requiresGrad can only be set on a leaf tensor; use detach() to make one");
    }
    self.requires_grad_(requires_grad);
    return info.Env().Undefined();
  });
}

// backward(gradient?, retainGraph?): a scalar output needs no gradient argument.
Napi::Value Tensor::Backward(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.backward", {
    args.ExpectAtMost(2);
    const at::Tensor& self = Value(args.call());
    at::Tensor gradient;
    if (args.present(0)) gradient = From(args, 0, "gradient");
    const bool retain = args.OptionalBool(1, "retainGraph", false);
    if (!self.requires_grad()) {
      throw SpinError(ErrorCode::kInvalidArgument,
                      "this tensor does not require grad (no input had requiresGrad set, or it was made under noGrad)");
    }
    if (!gradient.defined() && self.numel() != 1) {
      throw SpinError(ErrorCode::kShapeMismatch, "backward() without a gradient needs a one-element output, got " +
                                                     std::to_string(self.numel()) + " elements");
    }
    self.backward(gradient, retain);
    return info.Env().Undefined();
  });
}

// grad(): the accumulated gradient, or null before any backward.
Napi::Value Tensor::Grad(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.grad", {
    const at::Tensor& grad = Value(args.call()).grad();
    if (!grad.defined()) return info.Env().Null();
    return Wrap(info.Env(), grad);
  });
}

Napi::Value Tensor::ZeroGrad(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.zeroGrad", {
    at::Tensor self = Value(args.call());
    // Like PyTorch's zero_grad(set_to_none=True): frees the buffer instead of writing zeros.
    self.mutable_grad().reset();
    return info.Env().Undefined();
  });
}

}  // namespace spin
