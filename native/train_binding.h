// Training entry points: one native call per micro-batch (forward on [real; generated],
// loss, backward), the SPIN loss and metrics on log-prob tensors, and the optimizer handle.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "args.h"
#include "optim.h"

namespace spin {

class OptimizerHandle : public Napi::ObjectWrap<OptimizerHandle> {
 public:
  static Napi::Function Define(Napi::Env env);
  // createOptimizer(model, {kind, alpha, beta1, beta2, eps, weightDecay}, sharding?: {stage, bucketBytes})
  static Napi::Value Create(const Napi::CallbackInfo& info);
  static std::shared_ptr<Optimizer> From(const Args& args, size_t i);
  explicit OptimizerHandle(const Napi::CallbackInfo& info);
  ~OptimizerHandle() override;

  // Optimizers not yet disposed or collected, and the state bytes they report to V8.
  static int64_t LiveCount() { return live_count_.load(); }
  static int64_t ReportedBytes() { return reported_bytes_.load(); }

 private:
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value State(const Napi::CallbackInfo& info);
  Napi::Value LoadState(const Napi::CallbackInfo& info);
  Napi::Value Steps(const Napi::CallbackInfo& info);
  Napi::Value DiscardGradients(const Napi::CallbackInfo& info);
  // ZeRO stage 3: shardParameters() frees the layers' weights, keeping this rank's shards;
  // gatherParameters() -> Promise, a collective, makes them whole again.
  Napi::Value ShardParameters(const Napi::CallbackInfo& info);
  Napi::Value GatherParameters(const Napi::CallbackInfo& info);
  // gatheredWeights(root) -> Promise<Record<string, Tensor> | null>: a collective; on rank
  // `root` every trained weight, whole, on the CPU, gathered a layer at a time.
  Napi::Value GatheredWeights(const Napi::CallbackInfo& info);
  // dispose(): drops the state and the references to the model's parameters (idempotent).
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Optimizer& Get(const char* call) const;
  void Release();

  std::shared_ptr<Optimizer> optimizer_;
  int64_t reported_bytes_here_ = 0;
  static std::atomic<int64_t> live_count_;
  static std::atomic<int64_t> reported_bytes_;
};

// spinTrainStep(model, {ids, attentionMask, labels, opponentReal, opponentGenerated, identical?}, options)
Napi::Value SpinTrainStep(const Napi::CallbackInfo& info);
// sftTrainStep(model, {ids, attentionMask, labels}, options)
Napi::Value SftTrainStep(const Napi::CallbackInfo& info);
// spinLoss(policyReal, policyGenerated, opponentReal, opponentGenerated, identical?, options) -> scalar Tensor
Napi::Value SpinLossBinding(const Napi::CallbackInfo& info);
// spinMetrics(policyReal, policyGenerated, opponentReal, opponentGenerated, identical?, {beta}) -> metrics
Napi::Value SpinMetricsBinding(const Napi::CallbackInfo& info);

}  // namespace spin
