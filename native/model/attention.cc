#include "attention.h"

#include "upcast.h"

#include <ATen/ATen.h>
#include <torch/version.h>

#include <cmath>
#include <limits>

namespace spin {

namespace {
double LowestFinite(c10::ScalarType dtype) {
  switch (dtype) {
    case at::kDouble: return std::numeric_limits<double>::lowest();
    case at::kHalf: return -65504.0;
    case at::kBFloat16: return -3.3895313892515355e38;
    default: return std::numeric_limits<float>::lowest();
  }
}
}  // namespace

at::Tensor AttentionMask(const at::Tensor& attention_mask, int64_t past, int64_t queries,
                         std::optional<int64_t> sliding_window, c10::ScalarType dtype) {
  const int64_t keys = attention_mask.size(1);
  const auto long_options = at::TensorOptions().dtype(at::kLong).device(attention_mask.device());
  const at::Tensor query_slot = at::arange(past, past + queries, long_options).view({queries, 1});
  const at::Tensor key_slot = at::arange(0, keys, long_options).view({1, keys});
  at::Tensor visible = key_slot.le(query_slot);  // causal
  if (sliding_window) visible = visible.logical_and(query_slot.sub(key_slot).lt(*sliding_window));
  visible = visible.unsqueeze(0).logical_and(attention_mask.to(at::kBool).unsqueeze(1));  // [B, T, S]
  return AdditiveMask(visible, dtype).unsqueeze(1);
}

at::Tensor AdditiveMask(const at::Tensor& visible, c10::ScalarType dtype) {
  const at::Tensor zero = at::zeros({}, at::TensorOptions().dtype(dtype).device(visible.device()));
  return at::where(visible, zero, LowestFinite(dtype));
}

namespace {
// a @ b, rounded to a's dtype; 16-bit products of many query rows run in float32 (upcast.h).
at::Tensor MatMul(const at::Tensor& a, const at::Tensor& b) {
  if (UpcastGemm(a, a.size(-2))) return at::matmul(Upcast(a), Upcast(b)).to(a.scalar_type());
  return at::matmul(a, b);
}
}  // namespace

bool SdpaAvailable() { return TORCH_VERSION_MAJOR >= 2; }

at::Tensor Attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                     bool divide_by_sqrt, AttentionKernel kernel) {
  const int64_t groups = q.size(1) / k.size(1);
  const at::Tensor keys = groups == 1 ? k : k.repeat_interleave(groups, 1);
  const at::Tensor values = groups == 1 ? v : v.repeat_interleave(groups, 1);
  const double head_dim = static_cast<double>(q.size(-1));
#if TORCH_VERSION_MAJOR >= 2
  const bool fused_matches = (q.device().is_cuda() || q.scalar_type() == at::kFloat) && mask.scalar_type() == q.scalar_type();
  if (kernel == AttentionKernel::kSdpa && fused_matches) {
    return at::scaled_dot_product_attention(q, keys, values, mask);  // scale 1/√d
  }
#endif
  at::Tensor scores = MatMul(q, keys.transpose(-1, -2));
  scores = divide_by_sqrt ? scores.div(std::sqrt(head_dim)) : scores.mul(std::pow(head_dim, -0.5));
  // Softmax in float32 (float64 for float64 models), as transformers' eager attention.
  const at::Tensor weights =
      at::softmax(scores.add(mask), -1, at::promote_types(q.scalar_type(), at::kFloat)).to(q.scalar_type());
  return MatMul(weights, values);
}

}  // namespace spin
