// LoRA adapters on the decoder's linear projections, as PEFT's LoRA layer computes them:
//   y = W x + b + s · B (A dropout(x)),   s = α / r,
// A [r, in] and B [out, r] in their own dtype (float32 over a 16-bit base, as PEFT), the sum
// formed in that dtype and cast back to the base's. Tensors are named as PEFT names them,
// without its "base_model.model." prefix: "<module>.lora_A.weight", "<module>.lora_B.weight".
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>

namespace spin {

struct LoraWeights {
  at::Tensor a, b;  // [r, in], [out, r]; undefined: no adapter on this projection
  bool defined() const { return a.defined(); }
};

struct LoraAdapter {
  double scale = 0;    // α / r (or α / √r for rsLoRA): resolved by the caller
  double dropout = 0;  // on the adapter's input, while training
  std::map<std::string, at::Tensor> tensors;
};

// y + s·B(A·dropout(x)); `conv1d`: y came from a GPT-2 Conv1D (same LoRA shapes as PEFT's).
at::Tensor AddLora(const at::Tensor& y, const at::Tensor& x, const LoraWeights& lora, const LoraAdapter& adapter, bool training);

// W + s·B·A in W's dtype (W [out, in]; for a Conv1D weight [in, out] the transpose is added).
at::Tensor MergedWeight(const at::Tensor& weight, const LoraWeights& lora, double scale, bool conv1d);

}  // namespace spin
