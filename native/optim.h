// Optimizers over a model's parameters, in native code: RMSprop (the original SPIN's) and
// AdamW, with PyTorch's update formulas, and global grad-norm clipping as
// torch.nn.utils.clip_grad_norm_. State is a set of named tensors, saved with checkpoints.
//
// Sharded (ZeRO stages 1–3, see zero_partition.h), an optimizer updates and keeps state for
// the elements this rank owns, takes the gradient norm over every rank's gradients and
// all-gathers the updated weights; the update of each element is the replicated one.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "zero_partition.h"

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
#ifdef SPIN_HAS_C10D
  // State for this rank's part of `partition` only; Step is then a collective.
  Optimizer(std::shared_ptr<ZeroPartition> partition, OptimizerConfig config);
  // Null when not sharded.
  const std::shared_ptr<ZeroPartition>& partition() const { return partition_; }
#endif

  // Clips to max_grad_norm (<= 0: no clipping), updates unless the norm is not finite, then
  // frees the gradients.
  StepResult Step(double lr, double max_grad_norm);
  // Frees the gradients (and, sharded, the gradient shards) without an update.
  void DiscardGradients();

  // "<parameter>.<slot>" -> tensor, plus the step count. Sharded, a parameter's tensors
  // cover its owned elements, flat, unless it owns them all.
  std::map<std::string, at::Tensor> State() const;
  int64_t steps() const { return steps_; }
  // Takes each tensor in State()'s shape or, sharded, whole (its owned elements are used).
  void LoadState(const std::map<std::string, at::Tensor>& state, int64_t steps);

 private:
  // The elements of one parameter this optimizer updates: [begin, end) of its flat elements.
  struct Piece {
    std::string name;
    at::Tensor parameter;
    int64_t begin = 0, end = 0;
    size_t entry = 0;  // in the partition's layout
    bool whole() const { return begin == 0 && end == parameter.numel(); }
  };
  void AddPiece(Piece piece);
  std::vector<std::string> Slots() const;
  at::Tensor Elements(const Piece& piece, const at::Tensor& tensor) const;  // piece's part of a parameter-shaped tensor
  at::Tensor Gradient(const Piece& piece) const;                            // undefined when none
  at::Tensor Weights(const Piece& piece) const;                             // what the update changes
  double GradNorm() const;

  std::vector<at::Tensor> parameters_;  // every one trained, for freeing gradients
  std::vector<Piece> pieces_;
  OptimizerConfig config_;
  std::map<std::string, at::Tensor> state_;
  int64_t steps_ = 0;
#ifdef SPIN_HAS_C10D
  std::shared_ptr<ZeroPartition> partition_;
#endif
};

}  // namespace spin
