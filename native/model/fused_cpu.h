// Fused CPU kernels for forwards without autograd (decoding, log-probs under no-grad): RMSNorm
// and rotary embeddings in one pass each. Their composite ATen forms take 8 and 7 ops, each a
// dispatch and a pass over the tensor; in a batch-1 decode step those ops cost about as much as
// streaming a quarter of the weights. The results equal the composite forms' within float32
// rounding: RMSNorm sums in another order, and a compiler may contract RoPE's products and
// sums into fused multiply-adds.
#pragma once

#include <ATen/core/Tensor.h>

#include <initializer_list>
#include <optional>

namespace spin {

// Whether a forward may take a fast path whose rounding differs from the ATen form: in
// inference mode (generation), or with grad mode off and none of `tensors` requiring grad.
// Not in a checkpointed layer's first pass (grad mode off, trainable weights), whose
// recompute in backward runs the ATen form and must see the same activations.
bool FastPathMode(std::initializer_list<at::Tensor> tensors);

// weight · x / sqrt(mean(x²) + eps) over the last dimension, for float32 CPU tensors in
// FastPathMode; nullopt otherwise (the caller runs the composite form).
std::optional<at::Tensor> FusedRmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);

// x · cos + rotate_half(x) · sin, x [B, heads, T, d] (any strides, the last one 1), cos and
// sin [B, 1, T, d] contiguous; same conditions.
std::optional<at::Tensor> FusedRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace spin
