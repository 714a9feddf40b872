#include "lora.h"

#include <ATen/ATen.h>

#include "../dropout.h"

namespace spin {

at::Tensor AddLora(const at::Tensor& y, const at::Tensor& x, const LoraWeights& lora, const LoraAdapter& adapter, bool training) {
  if (!lora.defined()) return y;
  const at::Tensor input = adapter.dropout > 0 && training ? Dropout(x, adapter.dropout, lora.a.scalar_type()) : x.to(lora.a.scalar_type());
  // y + s·(A x)Bᵀ as one GEMM accumulating into y (no full-size temporaries for the scaled
  // update and the sum): the adapter's cost stays its two skinny GEMMs. y is a fresh output
  // that the projection's backward does not need, so it may be written in place.
  const at::Tensor low = at::linear(input.reshape({-1, input.size(-1)}), lora.a);
  if (y.scalar_type() == low.scalar_type()) return y.view({-1, y.size(-1)}).addmm_(low, lora.b.t(), 1, adapter.scale).view(y.sizes());
  // A 16-bit base: the sum in the adapter's dtype, then back (as PEFT).
  return at::addmm(y.reshape({-1, y.size(-1)}).to(low.scalar_type()), low, lora.b.t(), 1, adapter.scale).view(y.sizes()).to(y.scalar_type());
}

at::Tensor MergedWeight(const at::Tensor& weight, const LoraWeights& lora, double scale, bool conv1d) {
  const at::Tensor delta = at::matmul(lora.b, lora.a).mul(scale);
  const at::Tensor oriented = conv1d ? delta.t() : delta;
  return weight.to(oriented.scalar_type()).add(oriented).to(weight.scalar_type());
}

}  // namespace spin
