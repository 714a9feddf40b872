// DDP's gradient reducer: parameter gradients averaged across the ranks of the process group
// in flat buckets. Armed for a backward pass, a bucket's all-reduce starts as soon as autograd
// has accumulated every gradient in it (a post hook on each parameter's AccumulateGrad node),
// so communication overlaps the rest of backward; Finish() starts the buckets left (all of
// them when not armed), waits, and writes the averages back.
//
// Buckets (flat_layout.h) start strictly in bucket order, so every rank issues the same
// collectives in the same order.
//
// With a ZeRO stage-2 partition the reducer keeps only this rank's shard of each bucket's
// average (reduce-scatter on NCCL; on Gloo, which lacks it, an all-reduce of which the shard is
// kept) and frees the whole gradients as soon as a bucket is packed. It then reduces every
// micro-batch (armed before each backward), so whole gradients never accumulate, and at most
// two buckets are in flight.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "autograd_node.h"
#include "flat_layout.h"
#include "model/decoder.h"
#include "process_group.h"
#include "zero_partition.h"

namespace torch::autograd {
struct Node;
}

namespace spin {

#ifdef SPIN_HAS_C10D
struct ReductionStats {
  int64_t buckets = 0;
  int64_t overlapped = 0;  // buckets whose all-reduce started during backward
};

class GradientReducer : public std::enable_shared_from_this<GradientReducer> {
 public:
  // Parameters that require grad, bucketed by about bucket_bytes. Call after requires_grad is
  // set: the hooks go on their grad accumulators.
  static std::shared_ptr<GradientReducer> Create(std::shared_ptr<ProcessGroup> group, const Decoder& model,
                                                 int64_t bucket_bytes);
  // Stage 2: the partition's layout and gradient shards.
  static std::shared_ptr<GradientReducer> Create(std::shared_ptr<ZeroPartition> partition);

  // The next backward pass starts buckets as they fill (call before the last micro-batch of
  // an accumulation). Drops whatever an unfinished round left.
  void Arm();
  // Reduces what the backward pass has not, waits for every bucket and writes the averages
  // into the gradients (stage 2: adds this rank's shard to the partition's gradient shards).
  // A parameter without a gradient takes part as zeros. After a failure
  // (a peer lost, a gradient that came too late) every bucket is still reduced and waited for,
  // the gradients are left as they were, and the first error is thrown.
  ReductionStats Finish();

 private:
  friend class GradientReadyHook;
  struct Slot {
    NodePtr accumulator;  // held: the variable keeps it only weakly
    bool ready = false;
  };
  struct Bucket {
    size_t ready = 0;
    at::Tensor flat;   // the packed gradients, summed across ranks in place
    at::Tensor shard;  // stage 2 with reduce-scatter: this rank's summed shard
    c10::intrusive_ptr<c10d::Work> work;
  };

  GradientReducer(std::shared_ptr<ProcessGroup> group, FlatLayout layout, std::shared_ptr<ZeroPartition> partition);
  void HookGradients();  // once, after construction (the hooks hold the reducer weakly)
  void OnGradientReady(size_t slot);
  void StartBucket(size_t bucket);     // caller holds mutex_
  void CompleteBucket(size_t bucket);  // waits; stage 2 keeps its shard; caller holds mutex_
  void Reset();                        // caller holds mutex_

  std::shared_ptr<ProcessGroup> group_;
  FlatLayout layout_;
  std::shared_ptr<ZeroPartition> partition_;  // stage 2, else null
  std::vector<Slot> slots_;                    // by layout entry
  std::vector<Bucket> buckets_;
  std::mutex mutex_;
  bool armed_ = false;
  bool finishing_ = false;
  size_t next_bucket_ = 0;    // buckets before it have started
  size_t next_complete_ = 0;  // stage 2: buckets before it are in the shards
  int64_t overlapped_ = 0;
  std::string failure_;  // from a hook, reported by Finish (autograd must not see it)
};
#endif

}  // namespace spin
