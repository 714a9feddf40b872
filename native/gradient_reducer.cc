#include "gradient_reducer.h"

#ifdef SPIN_HAS_C10D

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>

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
  const auto expected = ExpectedParameters(model.config());
  std::set<const c10::TensorImpl*> seen;
  for (auto it = expected.rbegin(); it != expected.rend(); ++it) {
    const at::Tensor& parameter = model.parameters().at(it->first);
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
  for (size_t i = 0; i < reducer->slots_.size(); ++i) {
    reducer->slots_[i].hook =
        reducer->slots_[i].accumulator->add_post_hook(std::make_unique<GradientReadyHook>(reducer, i));
  }
  return reducer;
}

GradientReducer::~GradientReducer() {
  for (Slot& slot : slots_) slot.accumulator->del_post_hook(slot.hook);
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
  std::unique_lock<std::mutex> lock(mutex_);
  armed_ = false;
  c10::NoGradGuard no_grad;
  if (failure_.empty()) {
    while (next_bucket_ < buckets_.size()) StartBucket(buckets_[next_bucket_]);
  }
  ReductionStats stats{static_cast<int64_t>(buckets_.size()), overlapped_};
  const std::string failure = failure_;
  std::vector<Bucket*> started;
  for (size_t b = 0; b < next_bucket_; ++b) started.push_back(&buckets_[b]);
  lock.unlock();
  // Every started collective is waited for, even after a failure, so none outlives its buffer.
  for (Bucket* bucket : started) group_->Wait(bucket->work, "gradient all-reduce");
  lock.lock();
  if (!failure.empty()) {
    Reset();
    throw SpinError(ErrorCode::kInvalidArgument, failure);
  }
  for (Bucket& bucket : buckets_) {
    bucket.flat.div_(group_->world());
    int64_t offset = 0;
    for (size_t i : bucket.slots) {
      at::Tensor grad = slots_[i].parameter.grad();
      grad.copy_(bucket.flat.narrow(0, offset, grad.numel()).view(grad.sizes()));
      offset += grad.numel();
    }
  }
  Reset();
  return stats;
}

}  // namespace spin

#endif  // SPIN_HAS_C10D
