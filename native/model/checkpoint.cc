#include "checkpoint.h"

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <c10/core/GradMode.h>

#include <mutex>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include "../autograd_node.h"

namespace spin {

namespace {

// The backward node of a checkpointed block: recomputes the block with grad enabled from
// the saved input, then back-propagates the incoming gradient through it (reentrantly),
// which accumulates parameter gradients and yields the input's gradient.
at::Generator DefaultGenerator(const c10::Device& device) {
  return device.is_cpu() ? at::detail::getDefaultCPUGenerator() : at::globalContext().defaultGenerator(device);
}

at::Tensor GeneratorState(at::Generator& generator) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

void SetGeneratorState(at::Generator& generator, const at::Tensor& state) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

// Runs bracket.exit when the bracketed run ends, also by an exception.
class Bracketed {
 public:
  Bracketed(const BlockBracket& bracket, bool backward) : bracket_(bracket) {
    if (bracket_.enter) bracket_.enter(backward);
  }
  ~Bracketed() {
    if (bracket_.exit) bracket_.exit();
  }
  Bracketed(const Bracketed&) = delete;
  Bracketed& operator=(const Bracketed&) = delete;

 private:
  const BlockBracket& bracket_;
};

class CheckpointBackward : public torch::autograd::Node {
 public:
  CheckpointBackward(BlockFn block, at::Tensor input, bool input_requires_grad, at::Tensor rng_state, BlockBracket bracket)
      : block_(std::move(block)),
        input_(std::move(input)),
        input_requires_grad_(input_requires_grad),
        rng_state_(std::move(rng_state)),
        bracket_(std::move(bracket)) {}

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    TORCH_CHECK(input_.defined(), "checkpointed block: backward ran twice without retain_graph");
    Bracketed bracketed(bracket_, true);
    at::Tensor input = input_.detach().requires_grad_(input_requires_grad_);
    at::Tensor output;
    {
      c10::AutoGradMode enable(true);
      if (rng_state_.defined()) {
        // Replay the forward's random draws, then put the generator back where it was.
        at::Generator generator = DefaultGenerator(input.device());
        const at::Tensor now = GeneratorState(generator);
        SetGeneratorState(generator, rng_state_);
        output = block_(input);
        SetGeneratorState(generator, now);
      } else {
        output = block_(input);
      }
    }
    torch::autograd::backward({output}, {grads[0]});
    return {input_requires_grad_ ? input.grad() : at::Tensor()};
  }

  void release_variables() override {
    input_.reset();
    rng_state_.reset();
    block_ = nullptr;
    bracket_ = {};
  }

 private:
  BlockFn block_;
  at::Tensor input_;
  bool input_requires_grad_;
  at::Tensor rng_state_;
  BlockBracket bracket_;
};

}  // namespace

at::Tensor CheckpointedCall(const BlockFn& block, const at::Tensor& input, bool preserve_rng, BlockBracket bracket) {
  at::Tensor rng_state;
  if (preserve_rng) {
    at::Generator generator = DefaultGenerator(input.device());
    rng_state = GeneratorState(generator);
  }
  at::Tensor output;
  {
    c10::AutoGradMode disable(false);
    Bracketed bracketed(bracket, false);
    output = block(input);
  }
  AttachBackward(MakeNode<CheckpointBackward>(block, input.detach(), input.requires_grad(), rng_state, std::move(bracket)), input, output);
  return output;
}

}  // namespace spin
