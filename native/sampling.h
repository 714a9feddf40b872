// Next-token choice from logits, with transformers' processors in transformers' order:
// repetition penalty, then temperature, top-k, top-p, min-p; greedy or sampled. Sampling
// draws from one CPU generator per row, so a row's tokens depend on its seed (and its own
// logits) alone, not on which other rows share the batch or on the device.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <vector>

namespace spin {

struct SamplingConfig {
  bool greedy = true;
  double temperature = 1.0;
  int64_t top_k = 0;  // 0: off
  double top_p = 1.0;
  double min_p = 0.0;
  double repetition_penalty = 1.0;
};

// Validates the numbers (throws SpinError naming the field).
void CheckSamplingConfig(const SamplingConfig& config);

// logits: [B, V] (any float dtype); seen: [B, V] bool, tokens already in each row (for the
// repetition penalty) or undefined; generators: one per row (sampling only).
at::Tensor ChooseNextTokens(const at::Tensor& logits, const SamplingConfig& config, const at::Tensor& seen,
                            std::vector<at::Generator>& generators);

}  // namespace spin
