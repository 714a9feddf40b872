// Masks and scaled dot-product attention shared by every architecture.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace spin {

// Additive mask [B, 1, T, S] for queries at slots [past, past + T) over keys at slots [0, S):
// 0 where a key is visible (causal, not padding, inside the sliding window), else the
// dtype's lowest finite value (as transformers does, so fully masked rows stay finite).
// attention_mask: [B, S] with 1 for tokens and 0 for padding.
at::Tensor AttentionMask(const at::Tensor& attention_mask, int64_t past, int64_t queries,
                         std::optional<int64_t> sliding_window, c10::ScalarType dtype);

// softmax(q·kᵀ·scale + mask)·v with the softmax in float32; q: [B, H, T, d], k/v: [B, Hkv, S, d]
// (grouped-query heads are repeated to H). `divide_by_sqrt` follows GPT-2, which divides the
// scores by √d instead of multiplying by 1/√d.
at::Tensor Attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                     bool divide_by_sqrt);

}  // namespace spin
