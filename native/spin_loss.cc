#include "spin_loss.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "errors.h"

namespace spin {

SpinLossType ParseSpinLossType(const std::string& name) {
  if (name == "sigmoid") return SpinLossType::kSigmoid;
  if (name == "hinge") return SpinLossType::kHinge;
  if (name == "ipo") return SpinLossType::kIpo;
  throw SpinError(ErrorCode::kInvalidArgument, "unknown loss type '" + name + "' (sigmoid, hinge or ipo)");
}

void CheckPairLogprobs(const PairLogprobs& p, const at::Tensor& identical) {
  const std::pair<const char*, const at::Tensor*> named[] = {{"policyReal", &p.policy_real},
                                                              {"policyGenerated", &p.policy_generated},
                                                              {"opponentReal", &p.opponent_real},
                                                              {"opponentGenerated", &p.opponent_generated}};
  const int64_t pairs = p.policy_real.defined() ? p.policy_real.numel() : 0;
  for (const auto& [name, tensor] : named) {
    if (!tensor->defined() || tensor->dim() != 1 || !at::isFloatingType(tensor->scalar_type())) {
      throw SpinError(ErrorCode::kInvalidArgument, std::string(name) + " must be a 1-D floating tensor of log-probs, one per pair");
    }
    if (tensor->numel() != pairs) {
      throw SpinError(ErrorCode::kShapeMismatch, std::string(name) + " has " + std::to_string(tensor->numel()) + " values, policyReal " +
                                                     std::to_string(pairs) + ": one per pair each");
    }
    if (tensor->device() != p.policy_real.device()) throw SpinError(ErrorCode::kDevice, std::string(name) + " is on another device than policyReal");
  }
  if (identical.defined() && (identical.dim() != 1 || identical.numel() != pairs)) {
    throw SpinError(ErrorCode::kShapeMismatch, "identical must hold one value per pair (" + std::to_string(pairs) + ")");
  }
}

namespace {

// Δ per pair; an identical pair's two rows cancel only up to rounding, so its Δ is pinned to 0
// and its gradient is exactly zero, as the method says.
at::Tensor Delta(const PairLogprobs& p, const at::Tensor& same) {
  const at::Tensor delta = p.policy_real.sub(p.policy_generated).sub(p.opponent_real.sub(p.opponent_generated));
  return same.defined() ? at::where(same, at::zeros_like(delta), delta) : delta;
}

at::Tensor SameMask(const at::Tensor& identical, const at::Tensor& like) {
  return identical.defined() ? identical.to(like.device(), at::kBool) : at::Tensor();
}

double Mean(const at::Tensor& t) { return t.numel() == 0 ? 0.0 : t.to(at::kDouble).mean().item<double>(); }

}  // namespace

at::Tensor SpinLoss(const PairLogprobs& p, const SpinLossConfig& config, const at::Tensor& identical) {
  const at::Tensor delta = Delta(p, SameMask(identical, p.policy_real));
  const double beta = config.beta;
  at::Tensor losses;
  switch (config.type) {
    case SpinLossType::kSigmoid: {
      const double eps = config.label_smoothing;
      losses = at::log_sigmoid(delta.mul(beta)).mul(-(1 - eps));
      if (eps != 0) losses = losses.sub(at::log_sigmoid(delta.mul(-beta)).mul(eps));
      break;
    }
    case SpinLossType::kHinge:
      losses = at::relu(delta.mul(-beta).add(1));
      break;
    case SpinLossType::kIpo:
      losses = delta.sub(1 / (2 * beta)).pow(2);
      break;
  }
  return losses.mean();
}

at::Tensor SftLoss(const at::Tensor& policy_real, const at::Tensor& tokens_real) {
  return policy_real.sum().neg().div(tokens_real.sum().to(policy_real.scalar_type()));
}

Metrics SpinMetrics(const PairLogprobs& p, double beta, const at::Tensor& identical) {
  const at::Tensor same = SameMask(identical, p.policy_real);
  const at::Tensor real_rewards = p.policy_real.sub(p.opponent_real).detach().mul(beta).to(at::kDouble);
  const at::Tensor generated_rewards = p.policy_generated.sub(p.opponent_generated).detach().mul(beta).to(at::kDouble);
  // Strictly greater, beyond float32 resolution: the same sequence scored in two differently
  // composed batches differs in the last bits, and such ties count as wrong (so step 0 gives
  // exactly 0 however the opponent's pass was batched). Identical pairs never count.
  const at::Tensor magnitude = at::stack({p.policy_real, p.policy_generated, p.opponent_real, p.opponent_generated})
                                   .detach().abs().sum(0).to(at::kDouble);
  at::Tensor decided = real_rewards.sub(generated_rewards).gt(magnitude.mul(1e-5 * beta));
  if (same.defined()) decided = decided.logical_and(same.logical_not());
  const at::Tensor correct = decided.to(at::kDouble);
  Metrics metrics = {
      {"rewards/real", Mean(real_rewards)},
      {"rewards/generated", Mean(generated_rewards)},
      {"rewards/accuracies", Mean(correct)},
      {"rewards/margins", Mean(real_rewards.sub(generated_rewards))},
      {"logps/real", Mean(p.policy_real.detach())},
      {"logps/generated", Mean(p.policy_generated.detach())},
  };
  if (same.defined()) {
    const at::Tensor distinct = same.logical_not();
    const double distinct_count = distinct.to(at::kDouble).sum().item<double>();
    metrics.push_back({"pairs/identical", 1.0 - distinct_count / std::max<double>(1, static_cast<double>(distinct.numel()))});
    metrics.push_back({"rewards/accuracies_distinct",
                       distinct_count == 0 ? 0.0 : correct.masked_select(distinct).sum().item<double>() / distinct_count});
  }
  return metrics;
}

}  // namespace spin
