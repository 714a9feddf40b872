// libtorch's 16-bit GEMM on a CPU without 16-bit matrix instructions is several times slower
// than float32 (7.7× for a [2048 × 1024] · [1024 × 2816] bfloat16 product on this project's
// AVX2 machine). Products of many rows are therefore formed in float32 on the CPU: the
// products of 16-bit values are exact there and the sum accumulates in float32, as the 16-bit
// kernel does, and the result is rounded back to 16 bits. Matrix-vector products stay 16-bit:
// they are memory-bound, and converting the weight would triple their traffic.
#pragma once

#include <ATen/ATen.h>

namespace spin {

// Whether a product with `rows` rows of a left operand like `x` should run in float32.
inline bool UpcastGemm(const at::Tensor& x, int64_t rows) {
  const auto dtype = x.scalar_type();
  return rows >= 16 && x.device().is_cpu() && (dtype == at::kBFloat16 || dtype == at::kHalf);
}

inline at::Tensor Upcast(const at::Tensor& t) { return t.defined() ? t.to(at::kFloat) : t; }

}  // namespace spin
