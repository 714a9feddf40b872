#include "optim.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>

#include "errors.h"

namespace spin {

namespace {

std::string Shape(const at::Tensor& tensor) {
  std::string out = "[";
  for (int64_t d = 0; d < tensor.dim(); ++d) out += (d ? ", " : "") + std::to_string(tensor.size(d));
  return out + "]";
}

}  // namespace

Optimizer::Optimizer(std::vector<std::pair<std::string, at::Tensor>> parameters, OptimizerConfig config) : config_(config) {
  for (auto& [name, p] : parameters) AddPiece({name, p, 0, p.numel(), 0});
}

#ifdef SPIN_HAS_C10D
Optimizer::Optimizer(std::shared_ptr<ZeroPartition> partition, OptimizerConfig config) : config_(config), partition_(std::move(partition)) {
  const FlatLayout& layout = partition_->layout();
  for (size_t i = 0; i < layout.entries.size(); ++i) {
    const auto [begin, end] = partition_->Owned(i);
    AddPiece({layout.entries[i].name, layout.entries[i].parameter, begin, end, i});
  }
}
#endif

void Optimizer::AddPiece(Piece piece) {
  at::Tensor& p = piece.parameter;
  if (!at::isFloatingType(p.scalar_type())) throw SpinError(ErrorCode::kDType, "parameter " + piece.name + " is not floating-point");
  p.requires_grad_(true);
  parameters_.push_back(p);
  if (piece.begin == piece.end && !piece.whole()) return;  // sharded: none of it is this rank's
  for (const std::string& slot : Slots()) {
    state_[piece.name + "." + slot] = piece.whole() ? at::zeros_like(p, at::MemoryFormat::Contiguous)
                                                    : at::zeros({piece.end - piece.begin}, p.options().requires_grad(false));
  }
  pieces_.push_back(std::move(piece));
}

std::vector<std::string> Optimizer::Slots() const {
  if (config_.kind == OptimizerKind::kRMSprop) return {"square_avg"};
  return {"exp_avg", "exp_avg_sq"};
}

at::Tensor Optimizer::Elements(const Piece& piece, const at::Tensor& tensor) const {
  if (piece.whole()) return tensor;
  return tensor.detach().view({-1}).narrow(0, piece.begin, piece.end - piece.begin);
}

at::Tensor Optimizer::Gradient(const Piece& piece) const {
#ifdef SPIN_HAS_C10D
  if (partition_ && partition_->stage() >= 2) {
    const at::Tensor& shard = partition_->GradientShard(piece.entry);
    if (!shard.defined() || !piece.whole()) return shard;
    return shard.view(piece.parameter.sizes());
  }
#endif
  const at::Tensor& grad = piece.parameter.grad();
  return grad.defined() ? Elements(piece, grad.contiguous()) : grad;
}

at::Tensor Optimizer::Weights(const Piece& piece) const {
#ifdef SPIN_HAS_C10D
  // Stage 3 while sharded: the shard is the weight (the layer itself may be freed).
  if (partition_ && partition_->sharded()) {
    at::Tensor shard = partition_->ParameterShard(piece.entry);
    return piece.whole() ? shard.view(piece.parameter.sizes()) : shard;
  }
#endif
  return Elements(piece, piece.parameter);
}

double Optimizer::GradNorm() const {
#ifdef SPIN_HAS_C10D
  if (partition_ && partition_->stage() >= 2) {
    // Each rank holds a slice of the gradient: the squares are summed across ranks.
    at::Tensor totals = at::zeros({2}, at::kDouble);
    for (const Piece& piece : pieces_) {
      const at::Tensor grad = Gradient(piece);
      if (!grad.defined()) continue;
      totals[0] += grad.to(at::kDouble).pow(2).sum();
      totals[1] += 1;
    }
    partition_->group().AllReduce(totals, Reduction::kSum);
    if (totals[1].item<double>() == 0) throw SpinError(ErrorCode::kInvalidArgument, "optimizer step without gradients (no backward ran)");
    return std::sqrt(totals[0].item<double>());
  }
#endif
  // Every rank holds the whole gradient (replicated or stage 1): the replicated computation.
  std::vector<at::Tensor> norms;
  for (const at::Tensor& p : parameters_) {
    if (p.grad().defined()) norms.push_back(p.grad().norm(2).to(at::kDouble));
  }
  if (norms.empty()) throw SpinError(ErrorCode::kInvalidArgument, "optimizer step without gradients (no backward ran)");
  return at::stack(norms).norm(2).item<double>();
}

void Optimizer::DiscardGradients() {
  for (at::Tensor& p : parameters_) p.mutable_grad().reset();
#ifdef SPIN_HAS_C10D
  if (partition_) partition_->DiscardGradients();
#endif
}

StepResult Optimizer::Step(double lr, double max_grad_norm) {
  c10::NoGradGuard no_grad;
  StepResult result;
  result.grad_norm = GradNorm();
  if (!std::isfinite(result.grad_norm)) {
    DiscardGradients();
    return result;
  }
  // As clip_grad_norm_: grads scaled by min(1, max / (norm + 1e-6)).
  const double clip = max_grad_norm > 0 ? std::min(1.0, max_grad_norm / (result.grad_norm + 1e-6)) : 1.0;
  ++steps_;
  const double t = static_cast<double>(steps_);
  for (const Piece& piece : pieces_) {
    at::Tensor grad = Gradient(piece);
    if (!grad.defined()) continue;
    at::Tensor p = Weights(piece);
    if (clip < 1.0) grad.mul_(clip);
    if (config_.kind == OptimizerKind::kRMSprop) {
      // torch.optim.RMSprop (centered=False, momentum=0)
      if (config_.weight_decay != 0) grad = grad.add(p, config_.weight_decay);
      at::Tensor& square_avg = state_[piece.name + ".square_avg"];
      square_avg.mul_(config_.alpha).addcmul_(grad, grad, 1 - config_.alpha);
      p.addcdiv_(grad, square_avg.sqrt().add_(config_.eps), -lr);
    } else {
      // torch.optim.AdamW
      p.mul_(1 - lr * config_.weight_decay);
      at::Tensor& exp_avg = state_[piece.name + ".exp_avg"];
      at::Tensor& exp_avg_sq = state_[piece.name + ".exp_avg_sq"];
      exp_avg.lerp_(grad, 1 - config_.beta1);
      exp_avg_sq.mul_(config_.beta2).addcmul_(grad, grad, 1 - config_.beta2);
      const double bias1 = 1 - std::pow(config_.beta1, t);
      const double bias2 = 1 - std::pow(config_.beta2, t);
      const at::Tensor denom = exp_avg_sq.sqrt().div_(std::sqrt(bias2)).add_(config_.eps);
      p.addcdiv_(exp_avg, denom, -lr / bias1);
    }
  }
  DiscardGradients();
#ifdef SPIN_HAS_C10D
  if (partition_) partition_->GatherParameters();
#endif
  result.applied = true;
  return result;
}

std::map<std::string, at::Tensor> Optimizer::State() const { return state_; }

void Optimizer::LoadState(const std::map<std::string, at::Tensor>& state, int64_t steps) {
  c10::NoGradGuard no_grad;
  for (const Piece& piece : pieces_) {
    for (const std::string& slot : Slots()) {
      const std::string key = piece.name + "." + slot;
      at::Tensor& tensor = state_.at(key);
      const auto found = state.find(key);
      if (found == state.end()) throw SpinError(ErrorCode::kIO, "optimizer state lacks " + key);
      const at::Tensor& saved = found->second;
      if (saved.sizes() == tensor.sizes()) {
        tensor.copy_(saved);
      } else if (saved.sizes() == piece.parameter.sizes()) {
        tensor.copy_(Elements(piece, saved.contiguous()));  // a whole (unsharded) state: this rank's elements
      } else {
        throw SpinError(ErrorCode::kShapeMismatch, "optimizer state " + key + " has shape " + Shape(saved) + ", expected " + Shape(tensor) +
                                                       (piece.whole() ? "" : " (this rank's shard) or " + Shape(piece.parameter)));
      }
    }
  }
  steps_ = steps;
}

}  // namespace spin
