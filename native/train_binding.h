// Training entry points: one native call per micro-batch (forward on [real; generated],
// loss, backward) and the optimizer handle.
#pragma once

#include <napi.h>

#include <memory>

#include "optim.h"

namespace spin {

class OptimizerHandle : public Napi::ObjectWrap<OptimizerHandle> {
 public:
  static Napi::Function Define(Napi::Env env);
  // createOptimizer(model, {kind, alpha, beta1, beta2, eps, weightDecay})
  static Napi::Value Create(const Napi::CallbackInfo& info);
  explicit OptimizerHandle(const Napi::CallbackInfo& info);

 private:
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value State(const Napi::CallbackInfo& info);
  Napi::Value LoadState(const Napi::CallbackInfo& info);
  Napi::Value Steps(const Napi::CallbackInfo& info);
  std::shared_ptr<Optimizer> optimizer_;
};

// spinTrainStep(model, ids, mask, labels, opponentReal, opponentGenerated, identical?, options)
Napi::Value SpinTrainStep(const Napi::CallbackInfo& info);
// sftTrainStep(model, ids, mask, labels, options)
Napi::Value SftTrainStep(const Napi::CallbackInfo& info);

}  // namespace spin
