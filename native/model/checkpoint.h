// Activation (gradient) checkpointing: run a block without keeping its activations, and
// recompute them in backward — PyTorch's reentrant torch.utils.checkpoint in C++.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>

namespace spin {

using BlockFn = std::function<at::Tensor(const at::Tensor&)>;

// Brackets each run of a block — its forward, and its recomputation with the backward through
// it: ZeRO stage 3 gathers the block's weights in `enter` and frees them in `exit`.
struct BlockBracket {
  std::function<void(bool backward)> enter;
  std::function<void()> exit;
};

// `block` must own everything it needs (it runs again during backward). Gradients reach the
// block's parameters and `input`, exactly as an ordinary call would give. With `preserve_rng`
// (a block that draws random numbers, e.g. dropout) the recomputation replays the forward's
// draws from the input device's default generator, as torch.utils.checkpoint does.
at::Tensor CheckpointedCall(const BlockFn& block, const at::Tensor& input, bool preserve_rng = false, BlockBracket bracket = {});

}  // namespace spin
