// ZeRO's partition of training state across the ranks of the process group. Every bucket of
// the flat layout is cut into world equal shards (the last one padded): rank r owns shard r of
// every bucket, so each rank holds about 1/world of every dtype's state, and a bucket's shards
// are exactly what reduce-scatter hands out and all-gather collects.
//   Stage 1: the optimizer state covers the owned elements only; gradients stay whole.
//   Stage 2: + the averaged gradients of the owned elements only (the reducer scatters each
//            bucket and frees the whole gradients).
//   Stage 3: + the weights: buckets never span two decoder layers, and while sharded each rank
//            keeps only its shard of a layer's weights; the layer is gathered for each use (its
//            forward, its recomputation in backward — stage 3 trains with gradient
//            checkpointing) and freed after, the next layer's gather started meanwhile. A
//            gathered layer lives in a slot of a small pool (one layer each, reused), into
//            which all-gather writes and at which the layer's weights point: no copy, and no
//            allocator churn that would let freed layers linger in the process's memory. The
//            embeddings, final norm and head (layer -1) stay whole (gathered after each update).
// After an update each rank all-gathers the updated shards of the weights that are whole.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "flat_layout.h"
#include "model/decoder.h"
#include "process_group.h"

namespace spin {

#ifdef SPIN_HAS_C10D
class ZeroPartition : public LayerResidency, public std::enable_shared_from_this<ZeroPartition> {
 public:
  // Stage 3 builds the layout by the model's layers and becomes its residency (whole until
  // ShardParameters).
  static std::shared_ptr<ZeroPartition> Create(std::shared_ptr<ProcessGroup> group, const std::shared_ptr<Decoder>& model,
                                               std::vector<std::pair<std::string, at::Tensor>> trainable, int64_t bucket_bytes, int stage);

  const FlatLayout& layout() const { return layout_; }
  int stage() const { return stage_; }
  int rank() const { return group_->rank(); }
  int world() const { return group_->world(); }
  ProcessGroup& group() const { return *group_; }

  // Elements per shard of bucket b (its numel / world, rounded up).
  int64_t ShardNumel(size_t bucket) const;
  // The elements of entry e this rank owns, as [begin, end) of the parameter's flat
  // elements; begin == end when it owns none.
  std::pair<int64_t, int64_t> Owned(size_t entry) const;

  // Stage 2+: adds this rank's shard of bucket b's averaged gradient ([ShardNumel(b)]).
  void AccumulateGradient(size_t bucket, const at::Tensor& shard);
  // Stage 2+: the owned part of entry e's gradient, accumulated since the last update
  // (undefined when none arrived).
  const at::Tensor& GradientShard(size_t entry) const { return gradient_shards_[entry]; }
  // Frees the whole gradients and the gradient shards.
  void DiscardGradients();
  // After an update: sends the updated elements to every rank, into the weights that are whole.
  void GatherParameters();

  // Stage 3. Keeps this rank's shard of every layer and frees the layers' weights (local).
  void ShardParameters();
  // Stage 3. Makes every weight whole again (a collective: every rank calls it).
  void GatherAllParameters();
  // Stage 3 (a collective): every trained weight, whole, as CPU copies on rank `root` (empty on
  // the others), gathered one layer at a time — for saving without making every rank whole.
  std::vector<std::pair<std::string, at::Tensor>> GatherToRank(int root);
  // Stage 3, while sharded: the owned elements of entry e's weight (what an update changes).
  at::Tensor ParameterShard(size_t entry) const;

  // LayerResidency
  bool sharded() const override { return sharded_; }
  void Acquire(int64_t layer, int64_t next) override;
  void Release(int64_t layer) override;

 private:
  struct PendingGather {
    std::vector<c10::intrusive_ptr<c10d::Work>> works;  // one per bucket of the layer
    size_t slot = 0;
  };
  ZeroPartition(std::shared_ptr<ProcessGroup> group, FlatLayout layout, int stage);
  at::Tensor PackOwned(size_t bucket) const;  // this rank's shard of bucket b, from the whole weights
  void GatherInto(size_t bucket, at::Tensor shard);  // all-gathers bucket b's shards into its (whole) weights
  size_t TakeSlot();                           // caller holds mutex_ (as for the ones below)
  void StartGather(int64_t layer);             // all-gathers the layer's shards into a slot
  void FinishGather(int64_t layer);            // the layer's weights point into its slot
  void ReleaseLayer(int64_t layer);            // frees the slot (or the weights' own memory)
  void DrainGathers();                         // waits for prefetches and drops them
  const std::vector<size_t>& BucketsOf(int64_t layer) const;

  std::shared_ptr<ProcessGroup> group_;
  FlatLayout layout_;
  int stage_;
  std::vector<at::Tensor> gradient_shards_;  // by entry
  // Stage 3
  std::mutex mutex_;
  bool sharded_ = false;
  std::vector<at::Tensor> parameter_shards_;  // by bucket, while sharded
  std::vector<bool> whole_;                   // by bucket
  std::map<int64_t, std::vector<size_t>> buckets_of_layer_;
  std::vector<int64_t> slot_offset_;          // by bucket of a layer: where its gather lands in a slot
  int64_t slot_numel_ = 0;                    // the largest layer's world × shards
  at::TensorOptions slot_options_;
  std::vector<at::Tensor> slots_;
  std::vector<size_t> free_slots_;
  std::map<int64_t, size_t> slot_of_layer_;   // layers whose weights point into a slot
  std::map<int64_t, PendingGather> pending_;  // by layer
};
#endif

}  // namespace spin
