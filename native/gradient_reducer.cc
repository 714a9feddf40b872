#include "gradient_reducer.h"

#ifdef SPIN_HAS_C10D

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>

#include <exception>

#include "errors.h"

namespace spin {

namespace {

// Buckets in flight at once under stage 2: each holds a whole bucket of gradients.
constexpr size_t kShardedInFlight = 2;

}  // namespace

// Runs after AccumulateGrad has added this backward pass's gradient to parameter.grad().
class GradientReadyHook : public torch::autograd::FunctionPostHook {
 public:
  GradientReadyHook(std::weak_ptr<GradientReducer> reducer, size_t slot) : reducer_(std::move(reducer)), slot_(slot) {}

  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    if (auto reducer = reducer_.lock()) reducer->OnGradientReady(slot_);
    return outputs;
  }

 private:
  std::weak_ptr<GradientReducer> reducer_;
  size_t slot_;
};

GradientReducer::GradientReducer(std::shared_ptr<ProcessGroup> group, FlatLayout layout, std::shared_ptr<ZeroPartition> partition)
    : group_(std::move(group)), layout_(std::move(layout)), partition_(std::move(partition)), slots_(layout_.entries.size()), buckets_(layout_.buckets.size()) {
  for (size_t i = 0; i < layout_.entries.size(); ++i) {
    slots_[i].accumulator = torch::autograd::impl::grad_accumulator(layout_.entries[i].parameter);
    if (!slots_[i].accumulator) throw SpinError(ErrorCode::kInvalidArgument, layout_.entries[i].name + " is not a leaf tensor");
  }
}

std::shared_ptr<GradientReducer> GradientReducer::Create(std::shared_ptr<ProcessGroup> group, const Decoder& model, int64_t bucket_bytes) {
  std::shared_ptr<GradientReducer> reducer(new GradientReducer(std::move(group), FlatLayout::Build(model.TrainableParameters(), bucket_bytes), nullptr));
  reducer->HookGradients();
  return reducer;
}

std::shared_ptr<GradientReducer> GradientReducer::Create(std::shared_ptr<ZeroPartition> partition) {
  if (partition->stage() < 2) throw SpinError(ErrorCode::kInvalidArgument, "a sharded gradient reducer needs a stage-2 partition");
  auto group = ProcessGroup::Current();
  FlatLayout layout = partition->layout();
  std::shared_ptr<GradientReducer> reducer(new GradientReducer(std::move(group), std::move(layout), std::move(partition)));
  reducer->HookGradients();
  return reducer;
}

void GradientReducer::HookGradients() {
  // Hooks are never removed: a running backward may be iterating them. Once the reducer is
  // gone they are no-ops, and they go with the accumulators, which only the reducer holds.
  for (size_t i = 0; i < slots_.size(); ++i) slots_[i].accumulator->add_post_hook(std::make_unique<GradientReadyHook>(weak_from_this(), i));
}

void GradientReducer::Reset() {
  for (Slot& slot : slots_) slot.ready = false;
  for (Bucket& bucket : buckets_) bucket = Bucket{};
  next_bucket_ = 0;
  next_complete_ = 0;
  overlapped_ = 0;
  failure_.clear();
}

void GradientReducer::Arm() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finishing_) throw SpinError(ErrorCode::kInvalidArgument, "arm(): the previous finish() has not resolved yet");
  Reset();
  armed_ = true;
}

void GradientReducer::StartBucket(size_t index) {
  Bucket& bucket = buckets_[index];
  std::vector<at::Tensor> grads;
  for (size_t i : layout_.buckets[index].entries) {
    at::Tensor& parameter = layout_.entries[i].parameter;
    if (!parameter.grad().defined()) parameter.mutable_grad() = at::zeros_like(parameter);
    grads.push_back(parameter.grad().reshape({-1}));
  }
  ++next_bucket_;
  if (!partition_) {
    bucket.flat = at::cat(grads);
    bucket.work = group_->StartSum(bucket.flat);
    return;
  }
  // Padded to world equal shards; the whole gradients go as soon as they are packed.
  const int64_t shard_numel = partition_->ShardNumel(index);
  const int64_t padding = shard_numel * group_->world() - layout_.buckets[index].numel;
  if (padding > 0) grads.push_back(at::zeros({padding}, grads.front().options()));
  bucket.flat = at::cat(grads);
  grads.clear();
  for (size_t i : layout_.buckets[index].entries) layout_.entries[i].parameter.mutable_grad().reset();
  if (group_->HasReduceScatter(bucket.flat)) {
    bucket.shard = at::empty({shard_numel}, bucket.flat.options());
    bucket.work = group_->StartReduceScatter(bucket.flat, bucket.shard);
  } else {
    bucket.work = group_->StartSum(bucket.flat);
  }
}

void GradientReducer::CompleteBucket(size_t index) {
  Bucket& bucket = buckets_[index];
  group_->Wait(bucket.work, "gradient all-reduce");
  if (!partition_) return;  // averaged and copied back once every bucket is in
  const int64_t shard_numel = partition_->ShardNumel(index);
  at::Tensor shard = bucket.shard.defined() ? bucket.shard : bucket.flat.narrow(0, shard_numel * group_->rank(), shard_numel);
  partition_->AccumulateGradient(index, shard.div(group_->world()));
  bucket = Bucket{};
}

void GradientReducer::OnGradientReady(size_t index) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_ || !failure_.empty()) return;
  Slot& slot = slots_[index];
  const size_t bucket = layout_.entries[index].bucket;
  if (bucket < next_bucket_) {
    failure_ = layout_.entries[index].name + " received a gradient after its bucket's all-reduce had started (is it used by two backward passes?)";
    return;
  }
  if (slot.ready) return;  // a second contribution before its bucket started: still in time
  slot.ready = true;
  ++buckets_[bucket].ready;
  try {
    c10::NoGradGuard no_grad;
    while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].ready == layout_.buckets[next_bucket_].entries.size()) {
      StartBucket(next_bucket_);
      ++overlapped_;
      while (partition_ && next_bucket_ - next_complete_ > kShardedInFlight) CompleteBucket(next_complete_++);
    }
  } catch (const std::exception& e) {
    failure_ = std::string("reducing gradients during backward: ") + e.what();
  }
}

ReductionStats GradientReducer::Finish() {
  std::exception_ptr failure;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finishing_) throw SpinError(ErrorCode::kInvalidArgument, "finish(): the previous finish() has not resolved yet");
    finishing_ = true;
    armed_ = false;
    if (!failure_.empty()) failure = std::make_exception_ptr(SpinError(ErrorCode::kInvalidArgument, failure_));
  }
  // Backward is over and the hooks are disarmed: the buckets are this call's alone.
  const auto complete = [&](size_t index) {
    try {
      CompleteBucket(index);
    } catch (...) {
      if (!failure) failure = std::current_exception();
    }
  };
  c10::NoGradGuard no_grad;
  // Every bucket is reduced whatever happened before, so that every rank issues the same
  // collectives (a peer that did not fail is waiting for them).
  try {
    while (next_bucket_ < buckets_.size()) {
      StartBucket(next_bucket_);
      while (partition_ && next_bucket_ - next_complete_ > kShardedInFlight) complete(next_complete_++);
    }
  } catch (...) {
    if (!failure) failure = std::current_exception();
  }
  // Waited for one by one, even after a failure: none outlives this call.
  while (next_complete_ < next_bucket_) complete(next_complete_++);
  const ReductionStats stats{static_cast<int64_t>(buckets_.size()), overlapped_};
  if (!failure && !partition_) {
    for (size_t b = 0; b < buckets_.size(); ++b) {
      at::Tensor& flat = buckets_[b].flat;
      flat.div_(group_->world());
      for (size_t i : layout_.buckets[b].entries) {
        const FlatLayout::Entry& entry = layout_.entries[i];
        at::Tensor grad = entry.parameter.grad();
        grad.copy_(flat.narrow(0, entry.offset, grad.numel()).view(grad.sizes()));
      }
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  Reset();
  finishing_ = false;
  if (failure) std::rethrow_exception(failure);
  return stats;
}

}  // namespace spin

#endif  // SPIN_HAS_C10D
