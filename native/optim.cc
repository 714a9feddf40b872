#include "optim.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>

#include "errors.h"

namespace spin {

Optimizer::Optimizer(std::vector<std::pair<std::string, at::Tensor>> parameters, OptimizerConfig config)
    : parameters_(std::move(parameters)), config_(config) {
  for (auto& [name, p] : parameters_) {
    if (!at::isFloatingType(p.scalar_type())) throw SpinError(ErrorCode::kDType, "parameter " + name + " is not floating-point");
    p.requires_grad_(true);
    for (const std::string& slot : Slots()) state_[name + "." + slot] = at::zeros_like(p, at::MemoryFormat::Contiguous);
  }
}

std::vector<std::string> Optimizer::Slots() const {
  if (config_.kind == OptimizerKind::kRMSprop) return {"square_avg"};
  return {"exp_avg", "exp_avg_sq"};
}

StepResult Optimizer::Step(double lr, double max_grad_norm) {
  c10::NoGradGuard no_grad;
  StepResult result;
  std::vector<at::Tensor> norms;
  for (const auto& [name, p] : parameters_) {
    if (p.grad().defined()) norms.push_back(p.grad().norm(2).to(at::kDouble));
  }
  if (norms.empty()) throw SpinError(ErrorCode::kInvalidArgument, "optimizer step without gradients (no backward ran)");
  result.grad_norm = at::stack(norms).norm(2).item<double>();
  if (!std::isfinite(result.grad_norm)) {
    for (auto& [name, p] : parameters_) p.mutable_grad().reset();
    return result;
  }
  // As clip_grad_norm_: grads scaled by min(1, max / (norm + 1e-6)).
  const double clip = max_grad_norm > 0 ? std::min(1.0, max_grad_norm / (result.grad_norm + 1e-6)) : 1.0;
  ++steps_;
  const double t = static_cast<double>(steps_);
  for (auto& [name, p] : parameters_) {
    at::Tensor grad = p.grad();
    if (!grad.defined()) continue;
    if (clip < 1.0) grad.mul_(clip);
    if (config_.kind == OptimizerKind::kRMSprop) {
      // torch.optim.RMSprop (centered=False, momentum=0)
      if (config_.weight_decay != 0) grad = grad.add(p, config_.weight_decay);
      at::Tensor& square_avg = state_[name + ".square_avg"];
      square_avg.mul_(config_.alpha).addcmul_(grad, grad, 1 - config_.alpha);
      p.addcdiv_(grad, square_avg.sqrt().add_(config_.eps), -lr);
    } else {
      // torch.optim.AdamW
      p.mul_(1 - lr * config_.weight_decay);
      at::Tensor& exp_avg = state_[name + ".exp_avg"];
      at::Tensor& exp_avg_sq = state_[name + ".exp_avg_sq"];
      exp_avg.lerp_(grad, 1 - config_.beta1);
      exp_avg_sq.mul_(config_.beta2).addcmul_(grad, grad, 1 - config_.beta2);
      const double bias1 = 1 - std::pow(config_.beta1, t);
      const double bias2 = 1 - std::pow(config_.beta2, t);
      const at::Tensor denom = exp_avg_sq.sqrt().div_(std::sqrt(bias2)).add_(config_.eps);
      p.addcdiv_(exp_avg, denom, -lr / bias1);
    }
    p.mutable_grad().reset();
  }
  result.applied = true;
  return result;
}

std::map<std::string, at::Tensor> Optimizer::State() const { return state_; }

void Optimizer::LoadState(const std::map<std::string, at::Tensor>& state, int64_t steps) {
  c10::NoGradGuard no_grad;
  for (auto& [key, tensor] : state_) {
    const auto found = state.find(key);
    if (found == state.end()) throw SpinError(ErrorCode::kIO, "optimizer state lacks " + key);
    if (found->second.sizes() != tensor.sizes()) throw SpinError(ErrorCode::kShapeMismatch, "optimizer state " + key + " has another shape");
    tensor.copy_(found->second);
  }
  steps_ = steps;
}

}  // namespace spin
