#include "spin_loss.h"

#include <ATen/ATen.h>

#include "errors.h"

namespace spin {

SpinLossType ParseSpinLossType(const std::string& name) {
  if (name == "sigmoid") return SpinLossType::kSigmoid;
  if (name == "hinge") return SpinLossType::kHinge;
  if (name == "ipo") return SpinLossType::kIpo;
  throw SpinError(ErrorCode::kInvalidArgument, "unknown loss type '" + name + "' (sigmoid, hinge or ipo)");
}

SpinLossResult SpinLoss(const PairLogprobs& p, const SpinLossConfig& config, const at::Tensor& identical,
                        const at::Tensor& logit_sum_real, const at::Tensor& logit_sum_generated,
                        const at::Tensor& tokens_real, const at::Tensor& tokens_generated) {
  if (!(config.beta > 0)) throw SpinError(ErrorCode::kInvalidArgument, "beta must be positive");
  if (!(config.sft_weight >= 0)) throw SpinError(ErrorCode::kInvalidArgument, "sftWeight must be a non-negative number");
  const at::Tensor policy_ratio = p.policy_real.sub(p.policy_generated);
  const at::Tensor opponent_ratio = p.opponent_real.sub(p.opponent_generated);
  at::Tensor delta = policy_ratio.sub(opponent_ratio);
  // An identical pair's two rows cancel only up to rounding; pin its Δ to 0 so its gradient
  // is exactly zero, as the method says.
  const at::Tensor same = identical.defined() ? identical.to(at::kBool).to(delta.device()) : at::Tensor();
  if (same.defined()) delta = at::where(same, at::zeros_like(delta), delta);
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
  SpinLossResult result;
  result.loss = losses.mean();
  // The SFT term is added only when asked for, so that α = 0 is the original loss bit for bit.
  double spin_value = 0, sft_value = 0;
  if (config.sft_weight != 0) {
    const at::Tensor sft = p.policy_real.sum().neg().div(tokens_real.sum().to(p.policy_real.scalar_type()));
    spin_value = result.loss.detach().item<double>();
    sft_value = sft.detach().item<double>();
    result.loss = result.loss.add(sft.mul(config.sft_weight));
  }

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
  auto mean = [](const at::Tensor& t) { return t.numel() == 0 ? 0.0 : t.to(at::kDouble).mean().item<double>(); };
  auto per_token = [](const at::Tensor& sum, const at::Tensor& tokens) {
    const double count = tokens.to(at::kDouble).sum().item<double>();
    return count == 0 ? 0.0 : sum.to(at::kDouble).sum().item<double>() / count;
  };
  result.metrics = {
      {"loss", result.loss.detach().item<double>()},
      {"rewards/real", mean(real_rewards)},
      {"rewards/generated", mean(generated_rewards)},
      {"rewards/accuracies", mean(correct)},
      {"rewards/margins", mean(real_rewards.sub(generated_rewards))},
      {"logps/real", mean(p.policy_real.detach())},
      {"logps/generated", mean(p.policy_generated.detach())},
      {"logits/real", per_token(logit_sum_real, tokens_real)},
      {"logits/generated", per_token(logit_sum_generated, tokens_generated)},
  };
  if (config.sft_weight != 0) {
    result.metrics.push_back({"loss/spin", spin_value});
    result.metrics.push_back({"loss/sft", sft_value});
  }
  if (same.defined()) {
    const at::Tensor distinct = same.logical_not();
    const double distinct_count = distinct.to(at::kDouble).sum().item<double>();
    result.metrics.push_back({"pairs/identical", 1.0 - distinct_count / std::max<double>(1, static_cast<double>(distinct.numel()))});
    result.metrics.push_back({"rewards/accuracies_distinct",
                              distinct_count == 0 ? 0.0 : correct.masked_select(distinct).sum().item<double>() / distinct_count});
  }
  return result;
}

}  // namespace spin
