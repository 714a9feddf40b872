// libtorch's 16-bit GEMM on a CPU without 16-bit matrix instructions is several times slower
// than float32 (7.7× for a [2048 × 1024] · [1024 × 2816] bfloat16 product on this project's
// AVX2 machine). Products of many rows are therefore formed in float32 on such a CPU: the
// products of 16-bit values are exact there and the sum accumulates in float32, as the 16-bit
// kernel does, and the result is rounded back to 16 bits. Where the CPU has bfloat16 matrix
// instructions (AVX512-BF16 or AMX) and libtorch has oneDNN, bfloat16 products stay 16-bit: there
// they are 6× faster than float32 (a [2048 × 2048] · [2048 × 5632] product on a Sapphire Rapids
// core pair). Matrix-vector products stay 16-bit: they are memory-bound, and converting the
// weight would triple their traffic.
#pragma once

#include <ATen/ATen.h>

namespace spin {

// Whether this CPU and libtorch multiply bfloat16 matrices natively (decided once).
bool NativeBf16Gemm();

// Whether a product with `rows` rows of a left operand like `x` should run in float32.
inline bool UpcastGemm(const at::Tensor& x, int64_t rows) {
  const auto dtype = x.scalar_type();
  return rows >= 16 && x.device().is_cpu() && (dtype == at::kHalf || (dtype == at::kBFloat16 && !NativeBf16Gemm()));
}

inline at::Tensor Upcast(const at::Tensor& t) { return t.defined() ? t.to(at::kFloat) : t; }

// x2d · Wᵀ + b (W [out, in]) or, `conv1d`, x2d · W + b (W [in, out]), formed in float32 and
// rounded to x's dtype. For a frozen weight (a LoRA base) backward converts W again rather than
// keep its float32 copy: kept, a step without checkpointing would hold a float32 copy of the
// whole base. The gradient is the same either way.
at::Tensor UpcastProduct(const at::Tensor& x2d, const at::Tensor& weight, const at::Tensor& bias, bool conv1d);

}  // namespace spin
