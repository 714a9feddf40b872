// The SPIN pairwise loss family and its metrics (docs/method.md, "Loss" and "Metrics"):
//   Δ = [log πθ(real) − log πθt(real)] − [log πθ(generated) − log πθt(generated)]
//   sigmoid: −logσ(βΔ)                      (the original; label smoothing ε gives the
//            −(1−ε)·logσ(βΔ) − ε·logσ(−βΔ)   "conservative" variant)
//   hinge:   relu(1 − βΔ)
//   ipo:     (Δ − 1/(2β))²
// With an SFT weight α > 0 (RPO; TRL's rpo_alpha) the loss adds α × the mean negative
// log-likelihood per real-response token: Σ −log πθ(real) / Σ real tokens over the batch.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

namespace spin {

enum class SpinLossType { kSigmoid, kHinge, kIpo };

struct SpinLossConfig {
  SpinLossType type = SpinLossType::kSigmoid;
  double beta = 0.1;
  double label_smoothing = 0.0;
  double sft_weight = 0.0;
};

SpinLossType ParseSpinLossType(const std::string& name);

struct PairLogprobs {
  at::Tensor policy_real, policy_generated;      // [B], with grad
  at::Tensor opponent_real, opponent_generated;  // [B], no grad
};

struct SpinLossResult {
  at::Tensor loss;                                   // scalar mean over pairs (with grad)
  std::vector<std::pair<std::string, double>> metrics;  // the original's names
};

// identical: [B] bool, pairs whose generated response equals the real one (or undefined).
// logit sums: Σ over response tokens of the mean logit, and the token counts, per side.
SpinLossResult SpinLoss(const PairLogprobs& logps, const SpinLossConfig& config, const at::Tensor& identical,
                        const at::Tensor& logit_sum_real, const at::Tensor& logit_sum_generated,
                        const at::Tensor& tokens_real, const at::Tensor& tokens_generated);

}  // namespace spin
