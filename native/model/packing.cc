#include "packing.h"

#include <ATen/ATen.h>

#include "attention.h"

namespace spin {

std::shared_ptr<PackedSequences> PackSequences(const std::vector<std::vector<int64_t>>& sequences, c10::Device device) {
  std::vector<int64_t> ids, positions;
  auto packed = std::make_shared<PackedSequences>();
  for (const auto& sequence : sequences) {
    packed->groups.push_back({static_cast<int64_t>(ids.size()), static_cast<int64_t>(sequence.size())});
    for (size_t j = 0; j < sequence.size(); ++j) {
      ids.push_back(sequence[j]);
      positions.push_back(static_cast<int64_t>(j));
    }
  }
  const auto long_options = at::TensorOptions().dtype(at::kLong);
  const int64_t slots = static_cast<int64_t>(ids.size());
  packed->ids = at::tensor(ids, long_options).to(device).view({1, slots});
  packed->positions = at::tensor(positions, long_options).to(device).view({1, slots});
  packed->branch = at::zeros({slots}, long_options.device(device));
  return packed;
}

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
