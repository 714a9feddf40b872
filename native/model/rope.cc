#include "rope.h"

#include <ATen/ATen.h>

#include <cmath>

#include "fused_cpu.h"

namespace spin {

at::Tensor RopeInverseFrequencies(const ModelConfig& config, c10::Device device, c10::ScalarType model_dtype) {
  const int64_t dim = config.head_dim;
  const c10::ScalarType compute = at::promote_types(model_dtype, at::kFloat);
  // 1 / theta^(2i/d), computed in float32 like transformers' default rope init.
  at::Tensor exponents = at::arange(0, dim, 2, at::TensorOptions().dtype(at::kLong)).to(compute).div(static_cast<double>(dim));
  at::Tensor inverse = at::pow(config.rope_theta, exponents).reciprocal();
  if (config.rope_scaling == RopeScaling::kLinear) {
    inverse = inverse.div(config.rope_factor);
  } else if (config.rope_scaling == RopeScaling::kLlama3) {
    const double factor = config.rope_factor;
    const double old_context = static_cast<double>(config.rope_original_max_positions);
    const double low_wavelength = old_context / config.rope_low_freq_factor;
    const double high_wavelength = old_context / config.rope_high_freq_factor;
    const at::Tensor wavelength = inverse.reciprocal().mul(2 * M_PI);
    at::Tensor scaled = at::where(wavelength.gt(low_wavelength), inverse.div(factor), inverse);
    const at::Tensor smooth = wavelength.reciprocal().mul(old_context).sub(config.rope_low_freq_factor)
                                  .div(config.rope_high_freq_factor - config.rope_low_freq_factor);
    const at::Tensor smoothed = smooth.neg().add(1).mul(scaled).div(factor).add(smooth.mul(scaled));
    const at::Tensor medium = wavelength.lt(high_wavelength).logical_not().logical_and(wavelength.gt(low_wavelength).logical_not());
    inverse = at::where(medium, smoothed, scaled);
  }
  return inverse.to(device);
}

RopeTables RopeTablesFor(const at::Tensor& inverse_frequencies, const at::Tensor& positions, c10::ScalarType dtype) {
  const at::Tensor angles = positions.to(inverse_frequencies.scalar_type()).unsqueeze(-1).mul(inverse_frequencies);  // [B, T, d/2]
  const at::Tensor doubled = at::cat({angles, angles}, -1).unsqueeze(1);                       // [B, 1, T, d]
  return {doubled.cos().to(dtype), doubled.sin().to(dtype)};
}

at::Tensor ApplyRope(const at::Tensor& x, const RopeTables& tables) {
  if (std::optional<at::Tensor> fused = FusedRope(x, tables.cos, tables.sin)) return *fused;
  const int64_t half = x.size(-1) / 2;
  const at::Tensor rotated = at::cat({x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)}, -1);
  return x.mul(tables.cos).add(rotated.mul(tables.sin));
}

}  // namespace spin
