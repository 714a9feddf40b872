// Sequences laid end to end in one row, without padding. The linear layers, norms and the MLP
// then run on exactly the tokens there are; attention runs group by group.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace spin {

// A group is a contiguous range of the row whose tokens attend among themselves. Within a group,
// branch 0 is a prefix that every token of the group sees, and a token of branch b > 0 sees the
// prefix and the earlier tokens of its own branch. A sequence alone is a group of branch 0; two
// sequences with a common prefix (a SPIN pair's prompt) are one group: the prefix once
// (branch 0), then the rest of each (branches 1 and 2), so the prefix runs once.
struct PackedSequences {
  at::Tensor ids;        // [1, M] int64
  at::Tensor positions;  // [1, M] int64: each token's position in its own sequence
  at::Tensor branch;     // [M] int64
  std::vector<std::pair<int64_t, int64_t>> groups;  // (start, length) in the row
};

// Sequences packed one after another, each its own group (branch 0).
std::shared_ptr<PackedSequences> PackSequences(const std::vector<std::vector<int64_t>>& sequences, c10::Device device);

// The additive mask [1, 1, L, L] of group `group`: 0 where a key is visible to a query (same
// branch or the prefix, not later, inside the sliding window by position), else the dtype's
// lowest value. Every query sees at least itself.
at::Tensor GroupMask(const PackedSequences& packed, size_t group, std::optional<int64_t> sliding_window, c10::ScalarType dtype);

}  // namespace spin
