// The SPIN objective as functions of log-probs (docs/method.md, "Loss" and "Metrics"), shaped
// as TRL's dpo_loss: the loss is one function, its metrics another.
//   Δ = [log πθ(real) − log πθt(real)] − [log πθ(generated) − log πθt(generated)]
//   sigmoid: −logσ(βΔ)                      (the original; label smoothing ε gives the
//            −(1−ε)·logσ(βΔ) − ε·logσ(−βΔ)   "conservative" variant)
//   hinge:   relu(1 − βΔ)
//   ipo:     (Δ − 1/(2β))²
// The log-probs are per-response sums, or per-token means for TRL ≥ 0.7.11's IPO; the caller
// chooses. The SFT term (RPO; TRL's rpo_alpha) is a separate function the train step adds.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

namespace spin {

enum class SpinLossType { kSigmoid, kHinge, kIpo };

// Resolved values only: the defaults live in the TypeScript options table.
struct SpinLossConfig {
  SpinLossType type;
  double beta;
  double label_smoothing;
};

SpinLossType ParseSpinLossType(const std::string& name);

struct PairLogprobs {
  at::Tensor policy_real, policy_generated;      // [B], with grad
  at::Tensor opponent_real, opponent_generated;  // [B], no grad
};

// Checks the four are 1-D, floating, of one length and on one device, and that `identical`
// (when defined) is one value per pair; names the tensor that is not.
void CheckPairLogprobs(const PairLogprobs& logps, const at::Tensor& identical);

// The mean loss over pairs (a scalar with autograd). `identical` ([B] bool, or undefined)
// marks pairs whose generated response equals the real one: their Δ is pinned to 0.
at::Tensor SpinLoss(const PairLogprobs& logps, const SpinLossConfig& config, const at::Tensor& identical);

// The mean negative log-likelihood per real-response token: Σ −log πθ(real) / Σ tokens.
at::Tensor SftLoss(const at::Tensor& policy_real, const at::Tensor& tokens_real);

using Metrics = std::vector<std::pair<std::string, double>>;

// The original's reward metrics (rewards/real, rewards/generated, rewards/accuracies,
// rewards/margins, logps/real, logps/generated), plus pairs/identical and
// rewards/accuracies_distinct when `identical` is defined.
Metrics SpinMetrics(const PairLogprobs& logps, double beta, const at::Tensor& identical);

}  // namespace spin
