// Rotary position embeddings exactly as transformers computes them: inverse frequencies in
// float32 (with linear or llama3 scaling), cos/sin of position × frequency, and the
// rotate-half pairing (dimension i rotates with i + head_dim/2).
#pragma once

#include <ATen/core/Tensor.h>

#include "config.h"

namespace spin {

// [head_dim / 2] inverse frequencies on `device`: float32 as transformers computes them, or
// float64 for a float64 model (a verification mode: float64 end to end).
at::Tensor RopeInverseFrequencies(const ModelConfig& config, c10::Device device, c10::ScalarType model_dtype);

struct RopeTables {
  at::Tensor cos;  // [B, 1, T, head_dim], in the model dtype
  at::Tensor sin;
};

// positions: [B, T] int64.
RopeTables RopeTablesFor(const at::Tensor& inverse_frequencies, const at::Tensor& positions, c10::ScalarType dtype);

// x: [B, heads, T, head_dim].
at::Tensor ApplyRope(const at::Tensor& x, const RopeTables& tables);

}  // namespace spin
