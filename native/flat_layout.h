// The flat buckets shared by the gradient reducer and the sharded optimizer: trainable
// parameters in reverse forward order (the order backward produces their gradients), a tied
// tensor once, about bucket_bytes per bucket, a new bucket where dtype or device changes.
// Every rank builds the same layout from the same model, so bucket b holds the same tensors
// everywhere and a collective over it lines up across ranks.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace spin {

struct FlatLayout {
  struct Entry {
    std::string name;
    at::Tensor parameter;
    size_t bucket = 0;
    int64_t offset = 0;  // of its first element in the bucket's flat numbering
  };
  struct Bucket {
    std::vector<size_t> entries;
    int64_t numel = 0;
    int64_t unit = -1;  // with units: the one its tensors belong to
  };
  // The unit (a decoder layer, or -1) a tensor belongs to, by name.
  using UnitOf = std::function<int64_t(const std::string&)>;

  // Skips tensors that do not require grad (call after requires_grad is set). With
  // `unit_of`, a bucket never spans two units (ZeRO stage 3 gathers a layer's buckets).
  static FlatLayout Build(const std::vector<std::pair<std::string, at::Tensor>>& trainable, int64_t bucket_bytes, const UnitOf& unit_of = nullptr);

  std::vector<Entry> entries;
  std::vector<Bucket> buckets;
};

}  // namespace spin
