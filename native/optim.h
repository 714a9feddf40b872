// Optimizers over a model's parameters, in native code: RMSprop (the original SPIN's) and
// AdamW, with PyTorch's update formulas, and global grad-norm clipping as
// torch.nn.utils.clip_grad_norm_. State is a set of named tensors, saved with checkpoints.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace spin {

enum class OptimizerKind { kRMSprop, kAdamW };

// Resolved values only: the defaults live in the TypeScript options table.
struct OptimizerConfig {
  OptimizerKind kind;
  double alpha;  // RMSprop smoothing
  double beta1, beta2;
  double eps;
  double weight_decay;
};

struct StepResult {
  double grad_norm = 0;  // before clipping
  bool applied = false;  // false when the norm was not finite (no update made)
};

class Optimizer {
 public:
  Optimizer(std::vector<std::pair<std::string, at::Tensor>> parameters, OptimizerConfig config);

  // Clips to max_grad_norm (<= 0: no clipping), updates unless the norm is not finite, then
  // frees the gradients.
  StepResult Step(double lr, double max_grad_norm);

  // "<parameter>.<slot>" -> tensor, plus the step count.
  std::map<std::string, at::Tensor> State() const;
  int64_t steps() const { return steps_; }
  void LoadState(const std::map<std::string, at::Tensor>& state, int64_t steps);

 private:
  std::vector<std::string> Slots() const;
  std::vector<std::pair<std::string, at::Tensor>> parameters_;
  OptimizerConfig config_;
  std::map<std::string, at::Tensor> state_;
  int64_t steps_ = 0;
};

}  // namespace spin
