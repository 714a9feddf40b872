// Matrix-vector products for batch-1 decoding on the CPU. A decode step with one row reads
// every weight once and does two FLOPs per weight, so it runs at the speed the weights stream
// from memory. MKL's sgemv runs such products on one thread (12 GB/s on this project's 2-core
// AVX2 machine); an AVX2 pass per thread over its share of the rows streams a large weight at
// 20 GB/s there.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

namespace spin {

// weight [out, in] · x [in] (+ bias [out]), when the fast path applies: float32 CPU tensors,
// a contiguous weight, grad mode off, a CPU with AVX2 and FMA. nullopt otherwise (the caller uses at::mv).
std::optional<at::Tensor> MatVec(const at::Tensor& weight, const at::Tensor& x, const at::Tensor& bias);

// The products of several weights with the same x (q, k and v; gate and up) in one pass over
// the threads: waking the threads costs about as much as streaming a 512 × 512 weight, so
// fewer, larger passes run closer to the bandwidth. Biases: one per weight, each may be
// undefined. nullopt unless the fast path applies to every weight.
std::optional<std::vector<at::Tensor>> MatVecs(const std::vector<at::Tensor>& weights, const at::Tensor& x, const std::vector<at::Tensor>& biases);

// x [in] · weight [in, out] (+ bias [out]), for GPT-2's Conv1D layout; same conditions.
std::optional<at::Tensor> VecMat(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

}  // namespace spin
