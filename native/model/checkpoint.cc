#include "checkpoint.h"

#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include "../autograd_node.h"

namespace spin {

namespace {

// The backward node of a checkpointed block: recomputes the block with grad enabled from
// the saved input, then back-propagates the incoming gradient through it (reentrantly),
// which accumulates parameter gradients and yields the input's gradient.
class CheckpointBackward : public torch::autograd::Node {
 public:
  CheckpointBackward(BlockFn block, at::Tensor input, bool input_requires_grad)
      : block_(std::move(block)), input_(std::move(input)), input_requires_grad_(input_requires_grad) {}

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    TORCH_CHECK(input_.defined(), "checkpointed block: backward ran twice without retain_graph");
    at::Tensor input = input_.detach().requires_grad_(input_requires_grad_);
    at::Tensor output;
    {
      c10::AutoGradMode enable(true);
      output = block_(input);
    }
    torch::autograd::backward({output}, {grads[0]});
    return {input_requires_grad_ ? input.grad() : at::Tensor()};
  }

  void release_variables() override {
    input_.reset();
    block_ = nullptr;
  }

 private:
  BlockFn block_;
  at::Tensor input_;
  bool input_requires_grad_;
};

}  // namespace

at::Tensor CheckpointedCall(const BlockFn& block, const at::Tensor& input) {
  at::Tensor output;
  {
    c10::AutoGradMode disable(false);
    output = block(input);
  }
  NodePtr node = MakeNode<CheckpointBackward>(block, input.detach(), input.requires_grad());
  node->set_next_edges(torch::autograd::collect_next_edges(input));
  torch::autograd::create_gradient_edge(output, node);
  return output;
}

}  // namespace spin
