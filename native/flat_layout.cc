#include "flat_layout.h"

#include <set>

#include "errors.h"

namespace spin {

FlatLayout FlatLayout::Build(const std::vector<std::pair<std::string, at::Tensor>>& trainable, int64_t bucket_bytes, const UnitOf& unit_of) {
  if (bucket_bytes < 1) throw SpinError(ErrorCode::kInvalidArgument, "bucketBytes must be positive");
  FlatLayout layout;
  std::set<const c10::TensorImpl*> seen;
  int64_t filled = 0;
  for (auto it = trainable.rbegin(); it != trainable.rend(); ++it) {
    const at::Tensor& parameter = it->second;
    if (!parameter.requires_grad() || !seen.insert(parameter.unsafeGetTensorImpl()).second) continue;
    const at::Tensor* last = layout.entries.empty() ? nullptr : &layout.entries.back().parameter;
    const bool fits = last && filled + static_cast<int64_t>(parameter.nbytes()) <= bucket_bytes;
    const int64_t unit = unit_of ? unit_of(it->first) : -1;
    if (!fits || last->scalar_type() != parameter.scalar_type() || last->device() != parameter.device() || layout.buckets.back().unit != unit) {
      layout.buckets.emplace_back();
      layout.buckets.back().unit = unit;
      filled = 0;
    }
    filled += static_cast<int64_t>(parameter.nbytes());
    Bucket& bucket = layout.buckets.back();
    layout.entries.push_back({it->first, parameter, layout.buckets.size() - 1, bucket.numel});
    bucket.entries.push_back(layout.entries.size() - 1);
    bucket.numel += parameter.numel();
  }
  return layout;
}

}  // namespace spin
