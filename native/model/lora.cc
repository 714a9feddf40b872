#include "lora.h"

#include <ATen/ATen.h>

namespace spin {

at::Tensor AddLora(const at::Tensor& y, const at::Tensor& x, const LoraWeights& lora, const LoraAdapter& adapter, bool training) {
  if (!lora.defined()) return y;
  at::Tensor input = x.to(lora.a.scalar_type());
  if (adapter.dropout > 0 && training) input = at::dropout(input, adapter.dropout, true);
  const at::Tensor delta = at::linear(at::linear(input, lora.a), lora.b).mul(adapter.scale);
  return y.to(delta.scalar_type()).add(delta).to(y.scalar_type());
}

at::Tensor MergedWeight(const at::Tensor& weight, const LoraWeights& lora, double scale, bool conv1d) {
  const at::Tensor delta = at::matmul(lora.b, lora.a).mul(scale);
  const at::Tensor oriented = conv1d ? delta.t() : delta;
  return weight.to(oriented.scalar_type()).add(oriented).to(weight.scalar_type());
}

}  // namespace spin
