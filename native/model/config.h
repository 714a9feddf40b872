// The architecture settings of a causal LM, normalised by lib/model/config.ts from a Hugging
// Face config.json and validated again here.
#pragma once

#include <napi.h>

#include <cstdint>
#include <optional>
#include <string>

namespace spin {

enum class Architecture {
  kLlama,  // llama, mistral, qwen2: RMSNorm, RoPE, GQA, SwiGLU
  kGpt2,   // learned positions, LayerNorm, GELU-tanh, Conv1D weights stored [in, out]
};

enum class RopeScaling { kNone, kLinear, kLlama3 };

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_positions = 0;
  double norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling = RopeScaling::kNone;
  double rope_factor = 1.0;
  double rope_low_freq_factor = 1.0;
  double rope_high_freq_factor = 4.0;
  int64_t rope_original_max_positions = 8192;
  std::optional<int64_t> sliding_window;  // keys at distance >= window are masked
  int64_t sliding_window_from_layer = 0;  // layers before this one attend fully
  bool qkv_bias = false;                  // q/k/v projections carry a bias (qwen2, llama attention_bias)
  bool o_bias = false;                    // o_proj carries a bias (llama attention_bias)
  bool mlp_bias = false;
  bool tie_word_embeddings = false;
};

// Reads the object built by lib/model/config.ts; throws SpinError naming the bad field.
ModelConfig ReadModelConfig(const Napi::Object& object);

}  // namespace spin
