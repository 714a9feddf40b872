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

// How attention is computed. kEager forms the scores and the float32 softmax explicitly
// (transformers' "eager", the reference); kSdpa calls libtorch's fused
// scaled_dot_product_attention (transformers' default "sdpa"; libtorch ≥ 2), which does not
// keep the [T, S] weights and is faster in forward and backward. Their results differ by
// float32 rounding.
enum class AttentionKernel { kEager, kSdpa };

// Whether this build has scaled_dot_product_attention (libtorch ≥ 2).
bool SdpaAvailable();

// 0 where `visible`, else the dtype's lowest finite value, in `dtype`.
at::Tensor AdditiveMask(const at::Tensor& visible, c10::ScalarType dtype);

// softmax(q·kᵀ·scale + mask)·v; q: [B, H, T, d], k/v: [B, Hkv, S, d] (grouped-query heads are
// repeated to H); mask additive, broadcastable to [B, H, T, S]. `divide_by_sqrt` follows GPT-2,
// which divides the scores by √d instead of multiplying by 1/√d (eager only: the fused kernel
// multiplies). kSdpa falls back to eager where the fused kernel would not match it: 16-bit
// inputs on the CPU (eager forms their products in float32, upcast.h) and a mask in another
// dtype than q (bf16 autocast, where the mask's lowest value would round to −inf and fully
// masked padding rows to NaN).
at::Tensor Attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                     bool divide_by_sqrt, AttentionKernel kernel);

}  // namespace spin
