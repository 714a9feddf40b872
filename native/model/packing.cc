#include "packing.h"

#include <ATen/ATen.h>

#include "attention.h"

namespace spin {

at::Tensor GroupMask(const PackedSequences& packed, size_t group, std::optional<int64_t> sliding_window, c10::ScalarType dtype) {
  const auto [start, length] = packed.groups[group];
  const at::Tensor position = packed.positions.select(0, 0).narrow(0, start, length);
  const at::Tensor branch = packed.branch.narrow(0, start, length);
  const at::Tensor query_position = position.view({length, 1}), key_position = position.view({1, length});
  const at::Tensor key_branch = branch.view({1, length});
  at::Tensor visible = key_position.le(query_position).logical_and(key_branch.eq(0).logical_or(key_branch.eq(branch.view({length, 1}))));
  if (sliding_window) visible = visible.logical_and(query_position.sub(key_position).lt(*sliding_window));
  return AdditiveMask(visible, dtype).view({1, 1, length, length});
}

}  // namespace spin
