#include "zero_partition.h"

#ifdef SPIN_HAS_C10D

#include <ATen/ATen.h>
#include <c10/core/Allocator.h>
#include <c10/core/GradMode.h>
#include <c10/core/StorageImpl.h>

#include <algorithm>

#include "errors.h"

namespace spin {

namespace {

// The parameter's elements as one flat view that writes go through.
at::Tensor FlatView(const at::Tensor& parameter) { return parameter.detach().view({-1}); }

// A sharded layer's weights keep their tensors (the decoder, autograd and the optimizer hold
// them) while their memory goes, as FSDP resizes a flat parameter's storage to zero.
void FreeStorage(const at::Tensor& parameter) {
  c10::StorageImpl* storage = parameter.storage().unsafeGetStorageImpl();
  storage->set_data_ptr_noswap(at::DataPtr(nullptr, parameter.device()));
  storage->set_nbytes(0);
}

void AllocateStorage(const at::Tensor& parameter) {
  const size_t nbytes = parameter.nbytes();
  c10::StorageImpl* storage = parameter.storage().unsafeGetStorageImpl();
  storage->set_data_ptr_noswap(c10::GetAllocator(parameter.device().type())->allocate(nbytes));
  storage->set_nbytes(nbytes);
}

// A gathered layer's weight lives in its slot: the storage points there and owns nothing.
void PointInto(const at::Tensor& parameter, void* data) {
  c10::StorageImpl* storage = parameter.storage().unsafeGetStorageImpl();
  storage->set_data_ptr_noswap(at::DataPtr(data, parameter.device()));
  storage->set_nbytes(parameter.nbytes());
}

}  // namespace

std::shared_ptr<ZeroPartition> ZeroPartition::Create(std::shared_ptr<ProcessGroup> group, const std::shared_ptr<Decoder>& model,
                                                     std::vector<std::pair<std::string, at::Tensor>> trainable, int64_t bucket_bytes, int stage) {
  if (stage < 1 || stage > 3) throw SpinError(ErrorCode::kInvalidArgument, "sharding stage must be 1, 2 or 3, got " + std::to_string(stage));
  FlatLayout::UnitOf unit_of;
  if (stage == 3) unit_of = [model](const std::string& name) { return model->LayerOf(name); };
  std::shared_ptr<ZeroPartition> partition(new ZeroPartition(std::move(group), FlatLayout::Build(trainable, bucket_bytes, unit_of), stage));
  if (stage == 3) model->SetResidency(partition);
  return partition;
}

ZeroPartition::ZeroPartition(std::shared_ptr<ProcessGroup> group, FlatLayout layout, int stage)
    : group_(std::move(group)),
      layout_(std::move(layout)),
      stage_(stage),
      gradient_shards_(layout_.entries.size()),
      parameter_shards_(layout_.buckets.size()),
      whole_(layout_.buckets.size(), true) {
  for (const FlatLayout::Entry& entry : layout_.entries) {
    const at::Tensor& p = entry.parameter;
    if (!p.is_contiguous()) throw SpinError(ErrorCode::kInvalidArgument, "sharding: parameter " + entry.name + " is not contiguous");
    // Stage 3 frees a weight's storage: it must be the weight's alone.
    if (stage == 3 && (p.storage_offset() != 0 || p.storage().nbytes() != p.nbytes() || p.storage().use_count() > 1)) {
      throw SpinError(ErrorCode::kInvalidArgument, "sharding stage 3: parameter " + entry.name + " shares its memory with another tensor");
    }
  }
  for (size_t b = 0; b < layout_.buckets.size(); ++b) buckets_of_layer_[layout_.buckets[b].unit].push_back(b);
  if (stage != 3) return;
  // A slot holds one layer's gathered buckets back to back; every layer shares one slot size.
  slot_offset_.assign(layout_.buckets.size(), 0);
  const at::Tensor* first = nullptr;
  for (const auto& [layer, buckets] : buckets_of_layer_) {
    if (layer < 0) continue;
    int64_t offset = 0;
    for (size_t b : buckets) {
      const at::Tensor& p = layout_.entries[layout_.buckets[b].entries.front()].parameter;
      if (first && (p.scalar_type() != first->scalar_type() || p.device() != first->device())) {
        throw SpinError(ErrorCode::kInvalidArgument, "sharding stage 3: the layers' weights must share one dtype and device");
      }
      first = &p;
      slot_options_ = p.options().requires_grad(false);
      slot_offset_[b] = offset;
      offset += ShardNumel(b) * world();
    }
    slot_numel_ = std::max(slot_numel_, offset);
  }
}

int64_t ZeroPartition::ShardNumel(size_t bucket) const {
  const int64_t numel = layout_.buckets[bucket].numel;
  return (numel + world() - 1) / world();
}

std::pair<int64_t, int64_t> ZeroPartition::Owned(size_t index) const {
  const FlatLayout::Entry& entry = layout_.entries[index];
  const int64_t shard = ShardNumel(entry.bucket);
  const int64_t first = std::max<int64_t>(shard * rank(), entry.offset);
  const int64_t last = std::min<int64_t>(shard * (rank() + 1), entry.offset + entry.parameter.numel());
  if (first >= last) return {0, 0};
  return {first - entry.offset, last - entry.offset};
}

void ZeroPartition::AccumulateGradient(size_t bucket, const at::Tensor& shard) {
  c10::NoGradGuard no_grad;
  const int64_t start = ShardNumel(bucket) * rank();
  for (size_t index : layout_.buckets[bucket].entries) {
    const auto [begin, end] = Owned(index);
    if (begin == end) continue;
    const at::Tensor part = shard.narrow(0, layout_.entries[index].offset + begin - start, end - begin);
    at::Tensor& accumulated = gradient_shards_[index];
    if (accumulated.defined()) accumulated.add_(part);
    else accumulated = part.clone();
  }
}

void ZeroPartition::DiscardGradients() {
  for (size_t i = 0; i < layout_.entries.size(); ++i) {
    layout_.entries[i].parameter.mutable_grad().reset();
    gradient_shards_[i].reset();
  }
}

at::Tensor ZeroPartition::PackOwned(size_t b) const {
  const FlatLayout::Bucket& bucket = layout_.buckets[b];
  const int64_t start = ShardNumel(b) * rank();
  const at::Tensor& first = layout_.entries[bucket.entries.front()].parameter;
  at::Tensor shard = at::zeros({ShardNumel(b)}, first.options().requires_grad(false));
  for (size_t index : bucket.entries) {
    const auto [begin, end] = Owned(index);
    if (begin == end) continue;
    const FlatLayout::Entry& entry = layout_.entries[index];
    shard.narrow(0, entry.offset + begin - start, end - begin).copy_(FlatView(entry.parameter).narrow(0, begin, end - begin));
  }
  return shard;
}

void ZeroPartition::GatherInto(size_t b, at::Tensor shard) {
  const at::Tensor flat = group_->AllGather(shard).view({-1});
  for (size_t index : layout_.buckets[b].entries) {
    const FlatLayout::Entry& entry = layout_.entries[index];
    FlatView(entry.parameter).copy_(flat.narrow(0, entry.offset, entry.parameter.numel()));
  }
}

size_t ZeroPartition::TakeSlot() {
  if (free_slots_.empty()) {
    slots_.push_back(at::empty({slot_numel_}, slot_options_));
    free_slots_.push_back(slots_.size() - 1);
  }
  const size_t slot = free_slots_.back();
  free_slots_.pop_back();
  return slot;
}

void ZeroPartition::StartGather(int64_t layer) {
  PendingGather gather;
  gather.slot = TakeSlot();
  for (size_t b : BucketsOf(layer)) {
    at::Tensor output = slots_[gather.slot].narrow(0, slot_offset_[b], ShardNumel(b) * world());
    gather.works.push_back(group_->StartAllGather(parameter_shards_[b], output));
  }
  pending_[layer] = std::move(gather);
}

void ZeroPartition::FinishGather(int64_t layer) {
  if (!pending_.count(layer)) StartGather(layer);
  const PendingGather gather = std::move(pending_.at(layer));
  pending_.erase(layer);
  for (const auto& work : gather.works) group_->Wait(work, "weight all-gather");
  const at::Tensor& slot = slots_[gather.slot];
  char* base = static_cast<char*>(slot.data_ptr());
  for (size_t b : BucketsOf(layer)) {
    for (size_t index : layout_.buckets[b].entries) {
      const FlatLayout::Entry& entry = layout_.entries[index];
      PointInto(entry.parameter, base + (slot_offset_[b] + entry.offset) * slot.element_size());
    }
    whole_[b] = true;
  }
  slot_of_layer_[layer] = gather.slot;
}

void ZeroPartition::ReleaseLayer(int64_t layer) {
  for (size_t b : BucketsOf(layer)) {
    if (!whole_[b]) continue;
    for (size_t index : layout_.buckets[b].entries) FreeStorage(layout_.entries[index].parameter);
    whole_[b] = false;
  }
  const auto found = slot_of_layer_.find(layer);
  if (found == slot_of_layer_.end()) return;
  free_slots_.push_back(found->second);
  slot_of_layer_.erase(found);
}

void ZeroPartition::DrainGathers() {
  for (auto& [layer, gather] : pending_) {
    for (const auto& work : gather.works) group_->Wait(work, "weight all-gather");
    free_slots_.push_back(gather.slot);
  }
  pending_.clear();
}

const std::vector<size_t>& ZeroPartition::BucketsOf(int64_t layer) const {
  static const std::vector<size_t> none;
  const auto found = buckets_of_layer_.find(layer);
  return found == buckets_of_layer_.end() ? none : found->second;
}

void ZeroPartition::GatherParameters() {
  c10::NoGradGuard no_grad;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!sharded_) {
    // The weights are whole and each rank updated its elements: share them.
    for (size_t b = 0; b < layout_.buckets.size(); ++b) GatherInto(b, PackOwned(b));
    return;
  }
  // The shards are the weights. Gathered or prefetched layers predate the update: drop them
  // (the next use gathers the new values); refresh the buckets that stay whole.
  DrainGathers();
  for (const auto& [layer, buckets] : buckets_of_layer_) {
    if (layer >= 0) ReleaseLayer(layer);
  }
  for (size_t b : BucketsOf(-1)) GatherInto(b, parameter_shards_[b]);
}

void ZeroPartition::ShardParameters() {
  if (stage_ < 3) throw SpinError(ErrorCode::kInvalidArgument, "only ZeRO stage 3 shards the weights");
  c10::NoGradGuard no_grad;
  std::lock_guard<std::mutex> lock(mutex_);
  if (sharded_) return;
  for (size_t b = 0; b < layout_.buckets.size(); ++b) {
    parameter_shards_[b] = PackOwned(b);
    if (layout_.buckets[b].unit < 0) continue;  // embeddings, final norm, head: kept whole
    for (size_t index : layout_.buckets[b].entries) FreeStorage(layout_.entries[index].parameter);
    whole_[b] = false;
  }
  sharded_ = true;
}

void ZeroPartition::GatherAllParameters() {
  c10::NoGradGuard no_grad;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!sharded_) return;
  DrainGathers();
  // Layer by layer through a slot into memory of their own.
  for (const auto& [layer, buckets] : buckets_of_layer_) {
    if (layer < 0) continue;
    ReleaseLayer(layer);
    FinishGather(layer);
    const at::Tensor& slot = slots_[slot_of_layer_.at(layer)];
    for (size_t b : buckets) {
      for (size_t index : layout_.buckets[b].entries) {
        const FlatLayout::Entry& entry = layout_.entries[index];
        AllocateStorage(entry.parameter);
        FlatView(entry.parameter).copy_(slot.narrow(0, slot_offset_[b] + entry.offset, entry.parameter.numel()));
      }
    }
    free_slots_.push_back(slot_of_layer_.at(layer));
    slot_of_layer_.erase(layer);
  }
  for (at::Tensor& shard : parameter_shards_) shard.reset();
  slots_.clear();
  free_slots_.clear();
  sharded_ = false;
}

std::vector<std::pair<std::string, at::Tensor>> ZeroPartition::GatherToRank(int root) {
  c10::NoGradGuard no_grad;
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::pair<std::string, at::Tensor>> weights;
  const auto keep = [&](size_t b) {
    if (rank() != root) return;
    for (size_t index : layout_.buckets[b].entries) {
      const FlatLayout::Entry& entry = layout_.entries[index];
      weights.push_back({entry.name, entry.parameter.detach().to(at::kCPU, /*non_blocking=*/false, /*copy=*/true)});
    }
  };
  DrainGathers();
  for (const auto& [layer, buckets] : buckets_of_layer_) {
    const bool gather = sharded_ && layer >= 0 && !whole_[buckets.front()];
    if (gather) FinishGather(layer);
    for (size_t b : buckets) keep(b);
    if (gather) ReleaseLayer(layer);
  }
  return weights;
}

at::Tensor ZeroPartition::ParameterShard(size_t index) const {
  const FlatLayout::Entry& entry = layout_.entries[index];
  const auto [begin, end] = Owned(index);
  return parameter_shards_[entry.bucket].narrow(0, entry.offset + begin - ShardNumel(entry.bucket) * rank(), end - begin);
}

void ZeroPartition::Acquire(int64_t layer, int64_t next) {
  c10::NoGradGuard no_grad;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!sharded_) return;
  const auto whole = [this](int64_t l) { return BucketsOf(l).empty() || whole_[BucketsOf(l).front()]; };
  if (!whole(layer)) FinishGather(layer);
  if (next >= 0 && !whole(next) && !pending_.count(next)) StartGather(next);
}

void ZeroPartition::Release(int64_t layer) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (sharded_) ReleaseLayer(layer);
}

}  // namespace spin

#endif  // SPIN_HAS_C10D
