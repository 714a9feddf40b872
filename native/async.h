// Promise-returning native calls: `work` runs on a libuv worker thread so the event loop
// keeps ticking; `done` turns its result into a JS value back on the JS thread.
//
// libtorch keeps grad mode and the current CUDA device per thread, so the caller's grad
// mode and the device of the inputs are re-established inside the worker. Inputs are
// captured by value in `work`, which keeps them alive even if JS disposes their handles.
#pragma once

#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/GradMode.h>
#include <napi.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "errors.h"

namespace spin {

template <typename Result>
class TorchWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<Result()>;
  using Done = std::function<Napi::Value(Napi::Env, Result&)>;

  TorchWorker(Napi::Env env, std::string call, c10::Device device, Work work, Done done)
      : Napi::AsyncWorker(env, call.c_str()),
        deferred_(Napi::Promise::Deferred::New(env)),
        call_(std::move(call)),
        device_(device),
        grad_enabled_(c10::GradMode::is_enabled()),
        work_(std::move(work)),
        done_(std::move(done)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    at::init_num_threads();  // worker threads start with libtorch's default thread count
    c10::AutoGradMode grad_mode(grad_enabled_);
    std::optional<c10::DeviceGuard> device_guard;
    if (!device_.is_cpu()) device_guard.emplace(device_);
    try {
      result_.emplace(work_());
    } catch (...) {
      failure_ = CaptureCurrentException();
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (failure_) {
      deferred_.Reject(MakeError(env, call_, *failure_).Value());
      return;
    }
    try {
      deferred_.Resolve(done_(env, *result_));
    } catch (const Napi::Error& error) {
      deferred_.Reject(error.Value());
    } catch (...) {
      deferred_.Reject(MakeError(env, call_, CaptureCurrentException()).Value());
    }
    result_.reset();  // release native memory now, not when the worker object goes
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string call_;
  c10::Device device_;
  bool grad_enabled_;
  Work work_;
  Done done_;
  std::optional<Result> result_;
  std::optional<Failure> failure_;
};

// Queues `work` and returns its Promise.
template <typename Result>
Napi::Promise RunAsync(Napi::Env env, std::string call, c10::Device device,
                       typename TorchWorker<Result>::Work work,
                       typename TorchWorker<Result>::Done done) {
  auto* worker = new TorchWorker<Result>(env, std::move(call), device, std::move(work), std::move(done));
  Napi::Promise promise = worker->Promise();
  worker->Queue();  // the worker deletes itself after OnOK/OnError
  return promise;
}

}  // namespace spin
