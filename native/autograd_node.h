#pragma once
// Autograd node handles across libtorch versions: std::shared_ptr<Node> up to early 2.x,
// c10::intrusive_ptr<Node> since (pytorch#181782). NodePtr is whichever this libtorch uses,
// read off the API rather than a version number.
#include <ATen/core/Tensor.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>

#include <memory>
#include <type_traits>
#include <utility>

namespace spin {

using NodePtr = decltype(torch::autograd::impl::grad_accumulator(std::declval<const at::Tensor&>()));

// A custom node, owned as this libtorch expects.
template <class NodeT, class... Args>
NodePtr MakeNode(Args&&... args) {
  if constexpr (std::is_same_v<NodePtr, std::shared_ptr<torch::autograd::Node>>) {
    // deleteNode (found by ADL: NodeT derives from torch::autograd::Node) frees a long
    // graph iteratively instead of recursing through it.
    return std::shared_ptr<NodeT>(new NodeT(std::forward<Args>(args)...), [](NodeT* node) { deleteNode(node); });
  } else {
    return c10::make_intrusive<NodeT>(std::forward<Args>(args)...);
  }
}

// Makes `node` the backward of `output` (computed without autograd) with respect to `input`:
// the gradient `node` returns flows on to `input`'s producer.
inline void AttachBackward(const NodePtr& node, const at::Tensor& input, at::Tensor& output) {
  node->set_next_edges(torch::autograd::collect_next_edges(input));
  torch::autograd::create_gradient_edge(output, node);
}

}  // namespace spin
