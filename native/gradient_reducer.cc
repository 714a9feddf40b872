#include "gradient_reducer.h"

#ifdef SPIN_HAS_C10D

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>

#include <exception>
#include <set>

#include "errors.h"

namespace spin {

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

std::shared_ptr<GradientReducer> GradientReducer::Create(std::shared_ptr<ProcessGroup> group, const Decoder& model,
                                                         int64_t bucket_bytes) {
  if (bucket_bytes < 1) throw SpinError(ErrorCode::kInvalidArgument, "bucketBytes must be positive");
  std::shared_ptr<GradientReducer> reducer(new GradientReducer(std::move(group)));
  // Reverse forward order; a tied tensor (one TensorImpl under two names) is one slot.
  const auto trainable = model.TrainableParameters();
  std::set<const c10::TensorImpl*> seen;
  for (auto it = trainable.rbegin(); it != trainable.rend(); ++it) {
    const at::Tensor& parameter = it->second;
    if (!parameter.requires_grad() || !seen.insert(parameter.unsafeGetTensorImpl()).second) continue;
    Slot slot;
    slot.name = it->first;
    slot.parameter = parameter;
    slot.accumulator = torch::autograd::impl::grad_accumulator(parameter);
    if (!slot.accumulator) throw SpinError(ErrorCode::kInvalidArgument, it->first + " is not a leaf tensor");
    reducer->slots_.push_back(std::move(slot));
  }
  // Flat buckets of about bucket_bytes; a new bucket where the dtype or device changes.
  int64_t filled = 0;
  for (size_t i = 0; i < reducer->slots_.size(); ++i) {
    const at::Tensor& p = reducer->slots_[i].parameter;
    const bool fits = !reducer->buckets_.empty() && filled + static_cast<int64_t>(p.nbytes()) <= bucket_bytes;
    const at::Tensor* last = reducer->buckets_.empty() ? nullptr : &reducer->slots_[reducer->buckets_.back().slots.back()].parameter;
    if (!fits || last->scalar_type() != p.scalar_type() || last->device() != p.device()) {
      reducer->buckets_.emplace_back();
      filled = 0;
    }
    filled += static_cast<int64_t>(p.nbytes());
    reducer->buckets_.back().slots.push_back(i);
    reducer->slots_[i].bucket = reducer->buckets_.size() - 1;
  }
  // Hooks are never removed: a running backward may be iterating them. Once the reducer is
  // gone they are no-ops, and they go with the accumulators, which only the reducer holds.
  for (size_t i = 0; i < reducer->slots_.size(); ++i) {
    reducer->slots_[i].accumulator->add_post_hook(std::make_unique<GradientReadyHook>(reducer, i));
  }
  return reducer;
}

void GradientReducer::Reset() {
  for (Slot& slot : slots_) slot.ready = false;
  for (Bucket& bucket : buckets_) {
    bucket.ready = 0;
    bucket.flat.reset();
    bucket.work.reset();
  }
  next_bucket_ = 0;
  overlapped_ = 0;
  failure_.clear();
}

void GradientReducer::Arm() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finishing_) throw SpinError(ErrorCode::kInvalidArgument, "arm(): the previous finish() has not resolved yet");
  Reset();
  armed_ = true;
}

void GradientReducer::StartBucket(Bucket& bucket) {
  std::vector<at::Tensor> grads;
  for (size_t i : bucket.slots) {
    at::Tensor& parameter = slots_[i].parameter;
    if (!parameter.grad().defined()) parameter.mutable_grad() = at::zeros_like(parameter);
    grads.push_back(parameter.grad().reshape({-1}));
  }
  bucket.flat = at::cat(grads);
  bucket.work = group_->StartSum(bucket.flat);
  ++next_bucket_;
}

void GradientReducer::OnGradientReady(size_t index) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_ || !failure_.empty()) return;
  Slot& slot = slots_[index];
  if (slot.bucket < next_bucket_) {
    failure_ = slot.name + " received a gradient after its bucket's all-reduce had started (is it used by two backward passes?)";
    return;
  }
  if (slot.ready) return;  // a second contribution before its bucket started: still in time
  slot.ready = true;
  ++buckets_[slot.bucket].ready;
  try {
    c10::NoGradGuard no_grad;
    while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].ready == buckets_[next_bucket_].slots.size()) {
      StartBucket(buckets_[next_bucket_]);
      ++overlapped_;
    }
  } catch (const std::exception& e) {
    failure_ = std::string("starting a gradient all-reduce during backward: ") + e.what();
  }
}

ReductionStats GradientReducer::Finish() {
  std::exception_ptr failure;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  ReductionStats stats;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finishing_) throw SpinError(ErrorCode::kInvalidArgument, "finish(): the previous finish() has not resolved yet");
    finishing_ = true;
    armed_ = false;
    if (!failure_.empty()) failure = std::make_exception_ptr(SpinError(ErrorCode::kInvalidArgument, failure_));
    // Every bucket is reduced whatever happened before, so that every rank issues the same
    // collectives (a peer that did not fail is waiting for them).
    try {
      c10::NoGradGuard no_grad;
      while (next_bucket_ < buckets_.size()) StartBucket(buckets_[next_bucket_]);
    } catch (...) {
      if (!failure) failure = std::current_exception();
    }
    stats = {static_cast<int64_t>(buckets_.size()), overlapped_};
    for (size_t b = 0; b < next_bucket_; ++b) works.push_back(buckets_[b].work);
  }
  // Waited for one by one, even after a failure: none outlives this call.
  for (const auto& work : works) {
    try {
      group_->Wait(work, "gradient all-reduce");
    } catch (...) {
      if (!failure) failure = std::current_exception();
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (!failure) {
    c10::NoGradGuard no_grad;
    for (Bucket& bucket : buckets_) {
      bucket.flat.div_(group_->world());
      int64_t offset = 0;
      for (size_t i : bucket.slots) {
        at::Tensor grad = slots_[i].parameter.grad();
        grad.copy_(bucket.flat.narrow(0, offset, grad.numel()).view(grad.sizes()));
        offset += grad.numel();
      }
    }
  }
  Reset();
  finishing_ = false;
  if (failure) std::rethrow_exception(failure);
  return stats;
}

}  // namespace spin

#endif  // SPIN_HAS_C10D
