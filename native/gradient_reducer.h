// DDP's gradient reducer: parameter gradients averaged across the ranks of the process group
// in flat buckets. Armed for a backward pass, a bucket's all-reduce starts as soon as autograd
// has accumulated every gradient in it (a post hook on each parameter's AccumulateGrad node),
// so communication overlaps the rest of backward; Finish() starts the buckets left (all of
// them when not armed), waits, and writes the averages back.
//
// Buckets hold parameters in reverse forward order (the order backward produces them) and
// start strictly in bucket order, so every rank issues the same collectives in the same order.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "autograd_node.h"
#include "model/decoder.h"
#include "process_group.h"

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
  // Parameters that require grad, bucketed by about bucket_bytes (a bucket never mixes dtypes
  // or devices). Call after requires_grad is set: the hooks go on their grad accumulators.
  static std::shared_ptr<GradientReducer> Create(std::shared_ptr<ProcessGroup> group, const Decoder& model,
                                                 int64_t bucket_bytes);

  // The next backward pass starts buckets as they fill (call before the last micro-batch of
  // an accumulation). Drops whatever an unfinished round left.
  void Arm();
  // Reduces what the backward pass has not, waits for every bucket and writes the averages
  // into the gradients. A parameter without a gradient takes part as zeros. After a failure
  // (a peer lost, a gradient that came too late) every bucket is still reduced and waited for,
  // the gradients are left as they were, and the first error is thrown.
  ReductionStats Finish();

 private:
  friend class GradientReadyHook;
  struct Slot {
    std::string name;
    at::Tensor parameter;
    NodePtr accumulator;  // held: the variable keeps it only weakly
    size_t bucket = 0;
    bool ready = false;
  };
  struct Bucket {
    std::vector<size_t> slots;
    size_t ready = 0;
    at::Tensor flat;
    c10::intrusive_ptr<c10d::Work> work;
  };

  explicit GradientReducer(std::shared_ptr<ProcessGroup> group) : group_(std::move(group)) {}
  void OnGradientReady(size_t slot);
  void StartBucket(Bucket& bucket);  // caller holds mutex_
  void Reset();                      // caller holds mutex_

  std::shared_ptr<ProcessGroup> group_;
  std::vector<Slot> slots_;
  std::vector<Bucket> buckets_;
  std::mutex mutex_;
  bool armed_ = false;
  bool finishing_ = false;
  size_t next_bucket_ = 0;  // buckets before it have started
  int64_t overlapped_ = 0;
  std::string failure_;  // from a hook, reported by Finish (autograd must not see it)
};
#endif

}  // namespace spin
