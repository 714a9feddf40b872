#include "fused_cpu.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>

namespace spin {

namespace {

bool Fits(const at::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.layout() == at::kStrided;
}

// Rows per task: about 16K values, so small tensors stay on one thread.
int64_t Grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(width, 1)); }

}  // namespace

bool FastPathMode(std::initializer_list<at::Tensor> tensors) {
  if (c10::InferenceMode::is_enabled()) return true;
  if (c10::GradMode::is_enabled()) return false;
  return std::none_of(tensors.begin(), tensors.end(), [](const at::Tensor& t) { return t.defined() && t.requires_grad(); });
}

std::optional<at::Tensor> FusedRmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (!FastPathMode({x, weight}) || !Fits(x) || !Fits(weight) || x.dim() < 1 || weight.dim() != 1 || weight.numel() != x.size(-1)) return std::nullopt;
  const at::Tensor in = x.contiguous(), w = weight.contiguous();
  at::Tensor out = at::empty_like(in);
  const int64_t width = in.size(-1), rows = width == 0 ? 0 : in.numel() / width;
  const float *ip = in.data_ptr<float>(), *wp = w.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const float epsilon = static_cast<float>(eps);
  at::parallel_for(0, rows, Grain(width), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* row = ip + r * width;
      float sums[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // eight running sums, so the loop vectorizes
      int64_t i = 0;
      for (; i + 8 <= width; i += 8)
        for (int lane = 0; lane < 8; ++lane) sums[lane] += row[i + lane] * row[i + lane];
      for (; i < width; ++i) sums[0] += row[i] * row[i];
      const float sum = ((sums[0] + sums[1]) + (sums[2] + sums[3])) + ((sums[4] + sums[5]) + (sums[6] + sums[7]));
      const float scale = 1.0f / std::sqrt(sum / static_cast<float>(width) + epsilon);
      float* dst = op + r * width;
      for (int64_t j = 0; j < width; ++j) dst[j] = wp[j] * (row[j] * scale);
    }
  });
  return out;
}

std::optional<at::Tensor> FusedRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (!FastPathMode({x, cos, sin}) || !Fits(x) || !Fits(cos) || !Fits(sin) || x.dim() != 4 || x.stride(3) != 1) return std::nullopt;
  const int64_t batch = x.size(0), heads = x.size(1), tokens = x.size(2), dim = x.size(3), half = dim / 2;
  const std::vector<int64_t> table_shape{batch, 1, tokens, dim};
  if (dim % 2 != 0 || cos.sizes() != table_shape || sin.sizes() != table_shape || !cos.is_contiguous() || !sin.is_contiguous()) return std::nullopt;
  at::Tensor out = at::empty({batch, heads, tokens, dim}, x.options());
  const float *xp = x.data_ptr<float>(), *cp = cos.data_ptr<float>(), *sp = sin.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t sb = x.stride(0), sh = x.stride(1), st = x.stride(2);
  at::parallel_for(0, batch * heads * tokens, Grain(dim), [&](int64_t begin, int64_t end) {
    for (int64_t index = begin; index < end; ++index) {
      const int64_t t = index % tokens, h = (index / tokens) % heads, b = index / (tokens * heads);
      const float* src = xp + b * sb + h * sh + t * st;
      const float *c = cp + (b * tokens + t) * dim, *s = sp + (b * tokens + t) * dim;
      float* dst = op + index * dim;
      // rotate_half pairs dimension i with i + d/2: (−x₂, x₁).
      for (int64_t i = 0; i < half; ++i) {
        dst[i] = src[i] * c[i] - src[i + half] * s[i];
        dst[i + half] = src[i + half] * c[i + half] + src[i] * s[i + half];
      }
    }
  });
  return out;
}

}  // namespace spin
